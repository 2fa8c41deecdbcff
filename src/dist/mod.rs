//! Data-parallel training across processes, GPUs and nodes on libtorch's own
//! c10d engine (the layer under PyTorch's DDP): Gloo on CPU, NCCL on CUDA
//! builds. The C++ side is the small `extern "C"` shim in shim.cpp; this
//! module is its safe face plus what c10d leaves to its caller:
//!
//! - [`Launch`]: which rank this process is, read from the environment that
//!   `gda train --nproc N` ([`launch::local`]), torchrun or Slurm's srun set;
//! - [`Group::join`]: the rendezvous, with a handshake through the store
//!   that refuses ranks running another spec, build or step before any
//!   collective (Gloo aborts the process, uncatchably, on mismatched shapes);
//! - [`Reducer`]: gradient averaging as flattened all-reduces of buckets,
//!   each started during backward once its gradients are ready
//!   ([`Buckets`]: the same buckets issued after backward);
//! - [`watchdog`]: a heartbeat through the store, so a rank that stops
//!   answering ends its peers within [`watchdog::BOUND`], not `--dist-timeout`.

pub mod launch;
mod reduce;
mod store;
pub mod watchdog;

use std::ffi::{c_char, c_void, CString};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{input, GdaError};

pub use reduce::{Buckets, Reducer, BUCKET_BYTES};

extern "C" {
    fn gda_store_new(
        file: *const c_char,
        host: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn gda_store_set(g: *mut c_void, key: *const c_char, v: *const u8, len: usize, err: *mut c_char, n: usize) -> i32;
    fn gda_store_get(
        g: *mut c_void,
        key: *const c_char,
        out: *mut u8,
        cap: usize,
        len: *mut usize,
        err: *mut c_char,
        n: usize,
    ) -> i32;
    fn gda_group_join(
        g: *mut c_void,
        host: *const c_char,
        rank: i32,
        world: i32,
        nccl: i32,
        err: *mut c_char,
        n: usize,
    ) -> i32;
    fn gda_all_reduce_sum(g: *mut c_void, tensors: *mut *mut c_void, n: usize, err: *mut c_char, len: usize) -> i32;
    fn gda_group_free(g: *mut c_void);
}

/// How long a rank waits for its peers (at the rendezvous and in each
/// collective) when `--dist-timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the ranks meet: a file on a shared disk (ranks on one machine,
/// `--nproc`), or rank 0's TCP store at host:port.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendezvous {
    File(PathBuf),
    Tcp { host: String, port: u16 },
}

impl std::fmt::Display for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendezvous::File(p) => write!(f, "the store file {}", p.display()),
            Rendezvous::Tcp { host, port } => write!(f, "the TCP store at {host}:{port}"),
        }
    }
}

/// This process's place in a distributed run.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// The rank among those on this machine: its GPU (`cuda:LOCAL_RANK`).
    pub local_rank: usize,
    /// Ranks on this machine, which share its CPU cores.
    pub local_world: usize,
    pub rendezvous: Rendezvous,
    /// Which environment named the rank ("torchrun", "slurm").
    pub source: &'static str,
}

impl Launch {
    /// The rank from the environment: torchrun's (`RANK`, `WORLD_SIZE`,
    /// `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`; also
    /// what `--nproc` sets, with `GDA_STORE_FILE`) first, else Slurm's srun
    /// (`SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` or `SLURM_NTASKS`,
    /// `SLURM_LOCALID`, the first host of the step's node list). None for a
    /// world of one: an ordinary single-process run.
    pub fn from_env() -> Result<Option<Launch>, GdaError> {
        Launch::from_vars(&|k| std::env::var(k).ok())
    }

    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<Launch>, GdaError> {
        let num = |name: &str| -> Result<Option<usize>, GdaError> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    input(format!("environment variable {name}={v:?} is not a whole number (distributed launch)"))
                }),
            }
        };
        let (rank, world, local_rank, local_world, source) = if let Some(world) = num("WORLD_SIZE")? {
            let rank =
                num("RANK")?.ok_or_else(|| input("WORLD_SIZE is set but RANK is not (torchrun's environment)"))?;
            let local_rank = num("LOCAL_RANK")?.unwrap_or(0);
            // Unknown: assume all ranks share this machine, which splits
            // its threads the most conservatively.
            let local_world = num("LOCAL_WORLD_SIZE")?.unwrap_or(world);
            (rank, world, local_rank, local_world, "torchrun")
        } else if let Some(rank) = num("SLURM_PROCID")? {
            // SLURM_NTASKS is the allocation's; inside srun the step's count
            // is what matters (a batch script itself is one process).
            let world = match num("SLURM_STEP_NUM_TASKS")? {
                Some(n) => n,
                None => num("SLURM_NTASKS")?.unwrap_or(1),
            };
            let local_rank = num("SLURM_LOCALID")?.unwrap_or(0);
            let per_node = var("SLURM_STEP_TASKS_PER_NODE").or_else(|| var("SLURM_TASKS_PER_NODE"));
            let local_world = per_node.as_deref().and_then(leading_number).unwrap_or(world);
            (rank, world, local_rank, local_world, "slurm")
        } else {
            return Ok(None);
        };
        // A one-task Slurm job (a batch script, a sweep's array task) is an
        // ordinary run; torchrun's variables with a world of one still join
        // a process group of one (what scripts/gpu/check.sh checks NCCL with).
        if world == 0 || (world == 1 && source == "slurm") {
            return Ok(None);
        }
        if rank >= world || local_rank >= world {
            return Err(input(format!(
                "rank {rank} (local rank {local_rank}) is not below the world size {world} ({source} environment)"
            )));
        }
        let rendezvous = match var("GDA_STORE_FILE").filter(|f| !f.is_empty()) {
            Some(f) => Rendezvous::File(PathBuf::from(f)),
            None => {
                let host = match var("MASTER_ADDR") {
                    Some(h) => h,
                    None if source == "slurm" => var("SLURM_STEP_NODELIST")
                        .or_else(|| var("SLURM_JOB_NODELIST"))
                        .and_then(|l| first_host(&l))
                        .ok_or_else(|| {
                            input("neither MASTER_ADDR nor SLURM_JOB_NODELIST is set (srun's environment)")
                        })?,
                    None => "127.0.0.1".into(),
                };
                let port = match (num("MASTER_PORT")?, source) {
                    (Some(p), _) => p,
                    // One port per job step, so array tasks sharing a node
                    // (and a requeued task) do not meet each other's store.
                    (None, "slurm") => {
                        let job = num("SLURM_JOB_ID")?.unwrap_or(0);
                        let step = num("SLURM_STEP_ID")?.unwrap_or(0);
                        20000 + (job * 7 + step) % 30000
                    }
                    (None, _) => {
                        return Err(input("WORLD_SIZE is set but MASTER_PORT is not (torchrun's environment)"))
                    }
                };
                let port = u16::try_from(port)
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| input(format!("MASTER_PORT={port} is not a TCP port (1 to 65535)")))?;
                Rendezvous::Tcp { host, port }
            }
        };
        Ok(Some(Launch { rank, world, local_rank, local_world, rendezvous, source }))
    }
}

/// "2(x3),1" -> 2: the tasks on the first node (Slurm's compressed form).
fn leading_number(s: &str) -> Option<usize> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The first host of a Slurm node list: "node[03-05,9],gpu1" -> "node03".
pub fn first_host(list: &str) -> Option<String> {
    let first = list.trim();
    let Some(open) = first.find('[') else {
        return first.split(',').next().filter(|h| !h.is_empty()).map(str::to_string);
    };
    if let Some(comma) = first.find(',') {
        if comma < open {
            return Some(first[..comma].to_string());
        }
    }
    let close = first[open..].find(']')? + open;
    let range = first[open + 1..close].split(',').next()?;
    let lo = range.split('-').next()?;
    let rest = &first[close + 1..];
    let suffix = rest.split(',').next().unwrap_or("");
    Some(format!("{}{lo}{suffix}", &first[..open]))
}

/// What each rank tells the others before any collective.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    pub spec_hash: String,
    pub build: String,
    /// The step this rank starts at (its checkpoint's).
    pub step: usize,
    pub host: String,
    /// Why this rank cannot train (a busy run directory, a bad checkpoint):
    /// every rank then stops with it.
    pub error: Option<String>,
}

/// The identity of this gda executable: a hash of its bytes, so two builds
/// of different sources (or against different libtorch) never train together.
pub fn build_id() -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let read = std::env::current_exe().and_then(std::fs::File::open).and_then(|mut f| {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
        }
    });
    match read {
        Ok(()) => hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!("gda {}", env!("CARGO_PKG_VERSION")),
    }
}

const ERR_LEN: usize = 2048;

fn err_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("no NUL left")
}

/// A joined process group of `world` ranks.
pub struct Group {
    ptr: *mut c_void,
    pub rank: usize,
    pub world: usize,
    pub backend: &'static str,
    /// Every rank's host, by rank.
    pub hosts: Vec<String>,
    pub timeout: Duration,
    /// A failed collective leaves Gloo's threads waiting on a dead peer:
    /// such a group is never freed (the process is ending).
    broken: std::cell::Cell<bool>,
    watchdog: Option<watchdog::Watchdog>,
}

impl Group {
    /// Meets the other ranks, exchanges [`Hello`]s and compares them, then
    /// joins the process group (`nccl`: NCCL, else Gloo). Any rank's
    /// `error`, or a rank whose spec, build or step differs from rank 0's,
    /// stops every rank here, before any collective.
    pub fn join(launch: &Launch, hello: &Hello, nccl: bool, timeout: Duration) -> Result<Group, GdaError> {
        let (rank, world) = (launch.rank, launch.world);
        let mut err = [0u8; ERR_LEN];
        let errp = err.as_mut_ptr() as *mut c_char;
        let (file, host, port) = match &launch.rendezvous {
            Rendezvous::File(p) => (cstring(&p.to_string_lossy()), cstring("127.0.0.1"), 0),
            Rendezvous::Tcp { host, port } => (cstring(""), cstring(host), *port as i32),
        };
        let t = timeout.as_secs();
        let lost = |what: String| GdaError::PeerLost { rank, msg: what };
        store::check_port_free(launch)?;
        // SAFETY: valid C strings and an error buffer of ERR_LEN bytes.
        let ptr = unsafe {
            gda_store_new(
                file.as_ptr(),
                host.as_ptr(),
                port,
                rank as i32,
                world as i32,
                timeout.as_millis() as i64,
                errp,
                ERR_LEN,
            )
        };
        if ptr.is_null() {
            return Err(lost(store::unreachable(&launch.rendezvous, rank, t, &err_text(&err))));
        }
        let mut group = Group {
            ptr,
            rank,
            world,
            backend: if nccl { "nccl" } else { "gloo" },
            hosts: Vec::new(),
            timeout,
            broken: std::cell::Cell::new(true),
            watchdog: None,
        };
        store::claim(ptr, launch)?;
        let hellos = exchange(ptr, rank, world, hello, t)?;
        check_hellos(&hellos)?;
        let host = cstring(match &launch.rendezvous {
            Rendezvous::File(_) => "127.0.0.1",
            Rendezvous::Tcp { .. } => &hello.host,
        });
        // Gloo binds to this host's address (its name as the others know it).
        // SAFETY: as above.
        let rc = unsafe { gda_group_join(ptr, host.as_ptr(), rank as i32, world as i32, nccl as i32, errp, ERR_LEN) };
        if rc != 0 {
            return Err(lost(format!("cannot join the {} process group: {}", group.backend, err_text(&err))));
        }
        group.broken.set(false);
        group.hosts = hellos.into_iter().map(|h| h.host).collect();
        if world > 1 {
            group.watchdog = Some(watchdog::Watchdog::start(&launch.rendezvous, rank, group.hosts.clone())?);
        }
        Ok(group)
    }

    /// Ends the heartbeat at the normal end of training: rank 0, whose TCP
    /// store the others beat into, first waits until they ended too.
    pub fn finish(&mut self) {
        if let Some(w) = self.watchdog.as_mut() {
            w.finish(self.rank == 0);
        }
    }

    /// Sums each tensor over the ranks, in place; all are issued before any
    /// is waited for.
    pub fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<(), GdaError> {
        let mut ptrs: Vec<*mut c_void> = tensors.iter_mut().map(|t| t.as_mut_ptr() as *mut c_void).collect();
        let mut err = [0u8; ERR_LEN];
        // SAFETY: the pointers are live at::Tensor handles owned by `tensors`.
        let rc = unsafe {
            gda_all_reduce_sum(self.ptr, ptrs.as_mut_ptr(), ptrs.len(), err.as_mut_ptr() as *mut c_char, ERR_LEN)
        };
        if rc != 0 {
            return Err(self.collective_failed(&err_text(&err)));
        }
        Ok(())
    }
}

impl Group {
    /// The error of a failed collective, which also marks the group broken.
    fn collective_failed(&self, why: &str) -> GdaError {
        self.broken.set(true);
        GdaError::PeerLost {
            rank: self.rank,
            msg: format!(
                "an all-reduce failed: a peer rank died, was killed or did not answer within {} s ({why})",
                self.timeout.as_secs()
            ),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Before the store goes: the peers must read that this rank ended.
        drop(self.watchdog.take());
        if !self.broken.get() {
            // SAFETY: `ptr` came from gda_store_new and is freed once.
            unsafe { gda_group_free(self.ptr) };
        }
    }
}

/// Writes this rank's greeting and reads every rank's (waiting for each up
/// to the store's timeout of `t` seconds).
fn exchange(ptr: *mut c_void, rank: usize, world: usize, hello: &Hello, t: u64) -> Result<Vec<Hello>, GdaError> {
    let mut err = [0u8; ERR_LEN];
    let errp = err.as_mut_ptr() as *mut c_char;
    let lost = |what: String| GdaError::PeerLost { rank, msg: what };
    let mine = serde_json::to_vec(hello).expect("hello serialises");
    let key = cstring(&format!("gda/hello/{rank}"));
    // SAFETY: `ptr` is the live store; key, value and buffer outlive the call.
    if unsafe { gda_store_set(ptr, key.as_ptr(), mine.as_ptr(), mine.len(), errp, ERR_LEN) } != 0 {
        return Err(lost(format!("cannot write to the rendezvous store: {}", err_text(&err))));
    }
    let mut hellos = Vec::with_capacity(world);
    for r in 0..world {
        let key = cstring(&format!("gda/hello/{r}"));
        let mut buf = vec![0u8; 1 << 16];
        let mut len = 0usize;
        // SAFETY: as above; the shim copies at most buf.len() bytes.
        let rc = unsafe { gda_store_get(ptr, key.as_ptr(), buf.as_mut_ptr(), buf.len(), &mut len, errp, ERR_LEN) };
        if rc != 0 {
            return Err(lost(format!("rank {r} did not join within {t} s ({})", err_text(&err))));
        }
        buf.truncate(len);
        let h: Hello = serde_json::from_slice(&buf)
            .map_err(|e| lost(format!("rank {r} sent an unreadable greeting ({e}): is it another program?")))?;
        hellos.push(h);
    }
    // Rank 0 serves a TCP store: it stays until every rank has read the
    // greetings, so a refusal reaches all of them.
    let seen = cstring(&format!("gda/seen/{rank}"));
    // SAFETY: as above.
    unsafe { gda_store_set(ptr, seen.as_ptr(), [1u8].as_ptr(), 1, errp, ERR_LEN) };
    if rank == 0 {
        for r in 1..world {
            let key = cstring(&format!("gda/seen/{r}"));
            let (mut b, mut len) = ([0u8; 1], 0usize);
            // SAFETY: as above. A rank that vanished here is found by the join below.
            unsafe { gda_store_get(ptr, key.as_ptr(), b.as_mut_ptr(), 1, &mut len, errp, ERR_LEN) };
        }
    }
    Ok(hellos)
}

/// Refuses ranks that differ from rank 0, and stops every rank on any
/// rank's own error.
fn check_hellos(hellos: &[Hello]) -> Result<(), GdaError> {
    for (r, h) in hellos.iter().enumerate() {
        if let Some(e) = &h.error {
            return Err(input(format!("rank {r} ({}) cannot train, so no rank does: {e}", h.host)));
        }
    }
    let zero = &hellos[0];
    for (r, h) in hellos.iter().enumerate().skip(1) {
        let differs = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            input(format!(
                "rank {r} ({}) runs {what} {b}, rank 0 ({}) {a}: every rank must run the same spec with the same gda build from the same checkpoint; nothing was trained",
                h.host, zero.host
            ))
        };
        if h.spec_hash != zero.spec_hash {
            return Err(differs("the spec with hash", &zero.spec_hash, &h.spec_hash));
        }
        if h.build != zero.build {
            return Err(differs("gda build", &zero.build, &h.build));
        }
        if h.step != zero.step {
            return Err(differs("from step", &zero.step, &h.step));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn torchrun_environment() {
        let env =
            [("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "29501")];
        let l = Launch::from_vars(&vars(&env)).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.local_rank, l.local_world), (1, 2, 1, 2));
        assert_eq!(l.rendezvous, Rendezvous::Tcp { host: "h".into(), port: 29501 });
        let one = [("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_PORT", "29500")];
        assert_eq!(Launch::from_vars(&vars(&one)).unwrap().unwrap().world, 1);
        let e = Launch::from_vars(&vars(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")])).unwrap_err();
        assert!(e.to_string().contains("not below the world size 2"), "{e}");
        let e = Launch::from_vars(&vars(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(e.to_string().contains("MASTER_PORT"), "{e}");
    }

    #[test]
    fn slurm_environment() {
        let env = [
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEP_TASKS_PER_NODE", "2(x2)"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
            ("SLURM_JOB_ID", "100"),
        ];
        let l = Launch::from_vars(&vars(&env)).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.local_rank, l.local_world, l.source), (3, 4, 1, 2, "slurm"));
        assert_eq!(l.rendezvous, Rendezvous::Tcp { host: "gpu07".into(), port: 20700 });
        // A batch script of a one-task allocation is an ordinary run.
        assert!(Launch::from_vars(&vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")])).unwrap().is_none());
    }

    #[test]
    fn first_hosts_of_node_lists() {
        assert_eq!(first_host("node1").as_deref(), Some("node1"));
        assert_eq!(first_host("a,b[1-2]").as_deref(), Some("a"));
        assert_eq!(first_host("n[003-005,9]").as_deref(), Some("n003"));
        assert_eq!(first_host("rack[2-3]-gpu,x").as_deref(), Some("rack2-gpu"));
    }
}
