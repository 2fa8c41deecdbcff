//! The heartbeat: how a rank learns within seconds that a peer stopped
//! answering. A peer killed outright closes its sockets and the next
//! all-reduce fails at once; a stopped or frozen one (SIGSTOP, a hung node)
//! closes nothing, and Gloo would wait the whole `--dist-timeout` for it,
//! which must stay long enough to cover rank 0's evaluations.
//!
//! So each rank beats from a background thread, which goes on while its
//! main thread evaluates, checkpoints or waits in a collective: only a
//! process that is really stopped goes silent. Every [`BEAT`] it adds 1 to
//! its counter `gda/hb/<rank>` in the rendezvous store, over a connection
//! of its own, and reads the others'. A peer whose counter has not moved
//! for [`SILENCE`] is gone (a store that does not answer moves no counter:
//! rank 0 serves a TCP store, so a stopped rank 0 is found the same way),
//! and a second thread stops this process with exit code 10, naming it.
//! A rank that ends, normally or not, adds [`DONE`] to its counter first,
//! so no peer takes the end of a rank for silence.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::store::store_add;
use super::{cstring, err_text, Rendezvous, ERR_LEN};
use crate::error::GdaError;
use crate::util::out::err_line;

extern "C" {
    fn gda_store_client(
        file: *const c_char,
        host: *const c_char,
        port: i32,
        timeout_ms: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn gda_group_free(g: *mut c_void);
}

/// How often a rank beats.
pub const BEAT: Duration = Duration::from_secs(2);

/// How long a peer may stay silent before it is declared gone. A stopped
/// peer is found between SILENCE and SILENCE + BEAT + [`WATCH`] after its
/// last beat: about 17.5 s, within [`BOUND`] on a loaded machine too.
pub const SILENCE: Duration = Duration::from_secs(15);

/// The documented bound from a peer's stop to this rank's exit.
pub const BOUND: Duration = Duration::from_secs(30);

/// How often the watching thread looks at the counters.
const WATCH: Duration = Duration::from_millis(500);

/// Each store call of the heartbeat: short, so a rank 0 that stopped
/// serving fails a call instead of holding the thread for `--dist-timeout`.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Added to a counter by a rank that ends: any value from DONE up means
/// "ended, not silent".
const DONE: i64 = 1 << 40;

/// The heartbeat thread's own store connection (only that thread uses it).
struct Client(*mut c_void);

// SAFETY: the handle is moved into the heartbeat thread and used by it alone.
unsafe impl Send for Client {}

impl Client {
    fn connect(rendezvous: &Rendezvous) -> Result<Client, String> {
        let (file, host, port) = match rendezvous {
            Rendezvous::File(p) => (cstring(&p.to_string_lossy()), cstring(""), 0),
            Rendezvous::Tcp { host, port } => (cstring(""), cstring(host), *port as i32),
        };
        let mut err = [0u8; ERR_LEN];
        // SAFETY: valid C strings and an error buffer of ERR_LEN bytes.
        let ptr = unsafe {
            gda_store_client(
                file.as_ptr(),
                host.as_ptr(),
                port,
                OP_TIMEOUT.as_millis() as i64,
                err.as_mut_ptr() as *mut c_char,
                ERR_LEN,
            )
        };
        if ptr.is_null() {
            Err(err_text(&err))
        } else {
            Ok(Client(ptr))
        }
    }

    /// Adds `delta` to this rank's counter and reads every rank's.
    fn round(&self, rank: usize, world: usize, delta: i64) -> Result<Vec<i64>, String> {
        (0..world).map(|r| store_add(self.0, &format!("gda/hb/{r}"), if r == rank { delta } else { 0 })).collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: the handle came from gda_store_client and is freed once.
        unsafe { gda_group_free(self.0) };
    }
}

struct Peer {
    count: i64,
    /// When this rank last saw the counter move.
    heard: Instant,
}

struct State {
    peers: Vec<Peer>,
    /// The rank is ending: it writes DONE, and declares no peer gone.
    ending: bool,
    done_written: bool,
    /// A round failed after `ending` was set (the store is gone).
    failed_ending: bool,
    last_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicked heartbeat thread leaves the state as readable as before.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The heartbeat of one rank; [`Watchdog::finish`] (or dropping it) ends it.
pub struct Watchdog {
    shared: Arc<Shared>,
    rank: usize,
    world: usize,
    ended: bool,
}

impl Watchdog {
    /// Starts beating and watching the `hosts.len()` ranks' counters.
    pub fn start(rendezvous: &Rendezvous, rank: usize, hosts: Vec<String>) -> Result<Watchdog, GdaError> {
        let world = hosts.len();
        let now = Instant::now();
        let state = State {
            peers: (0..world).map(|_| Peer { count: 0, heard: now }).collect(),
            ending: false,
            done_written: false,
            failed_ending: false,
            last_error: None,
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), stop: AtomicBool::new(false) });
        let (beating, rendezvous) = (shared.clone(), rendezvous.clone());
        let watching = shared.clone();
        let started = std::thread::Builder::new()
            .name("gda-heartbeat".into())
            .spawn(move || beat(&beating, &rendezvous, rank, world))
            .and_then(|_| {
                std::thread::Builder::new().name("gda-watchdog".into()).spawn(move || watch(&watching, rank, &hosts))
            });
        // A rank without a heartbeat would be declared gone by its peers.
        started.map_err(|e| GdaError::PeerLost { rank, msg: format!("cannot start the heartbeat thread: {e}") })?;
        Ok(Watchdog { shared, rank, world, ended: false })
    }

    /// Tells the peers that this rank ends, so none reports it as silent.
    /// `wait_for_peers` (rank 0 at the end of training, whose TCP store the
    /// others beat into) also waits, at most [`SILENCE`], until every peer
    /// said it ended. Declares no peer gone from now on.
    pub fn finish(&mut self, wait_for_peers: bool) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.shared.lock().ending = true;
        let limit = if wait_for_peers { SILENCE } else { OP_TIMEOUT + BEAT };
        let start = Instant::now();
        while start.elapsed() < limit {
            {
                let s = self.shared.lock();
                let peers_done = (0..self.world).all(|r| r == self.rank || s.peers[r].count >= DONE);
                if s.failed_ending || (s.done_written && (!wait_for_peers || peers_done)) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// The heartbeat thread: one round every [`BEAT`] (at once when ending).
fn beat(shared: &Shared, rendezvous: &Rendezvous, rank: usize, world: usize) {
    let mut client: Option<Client> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let (ending, done_written) = {
            let s = shared.lock();
            (s.ending, s.done_written)
        };
        let delta = match (ending, done_written) {
            (false, _) => 1,
            (true, false) => DONE,
            (true, true) => 0,
        };
        let round = match client.take() {
            Some(c) => Ok(c),
            None => Client::connect(rendezvous),
        }
        .and_then(|c| c.round(rank, world, delta).map(|counts| (c, counts)));
        let now = Instant::now();
        let mut s = shared.lock();
        match round {
            Ok((c, counts)) => {
                client = Some(c);
                s.done_written |= delta == DONE;
                for (peer, count) in s.peers.iter_mut().zip(counts) {
                    if count != peer.count {
                        *peer = Peer { count, heard: now };
                    }
                }
            }
            // The connection is dropped: after a timeout a TCP store's
            // replies are out of step with its requests.
            Err(e) => {
                s.failed_ending |= ending;
                s.last_error = Some(e);
            }
        }
        drop(s);
        let started = Instant::now();
        while started.elapsed() < BEAT && !shared.stop.load(Ordering::SeqCst) {
            if shared.lock().ending != ending {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The watching thread: stops the process when a peer has been silent for
/// [`SILENCE`]. Separate from the beating one, whose store call may hang
/// on a stopped rank 0 for as long as the socket lets it.
fn watch(shared: &Shared, rank: usize, hosts: &[String]) {
    loop {
        std::thread::sleep(WATCH);
        let s = shared.lock();
        if s.ending || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let silent = s
            .peers
            .iter()
            .enumerate()
            .find(|(r, p)| *r != rank && p.count < DONE && now.duration_since(p.heard) > SILENCE);
        let Some((r, peer)) = silent else { continue };
        let store = s.last_error.as_ref().map(|e| format!("; the store's last error: {e}")).unwrap_or_default();
        let err = GdaError::PeerLost {
            rank,
            msg: format!(
                "rank {r} on {} stopped answering (no heartbeat for {:.0} s{store}); stopping",
                hosts[r],
                now.duration_since(peer.heard).as_secs_f64()
            ),
        };
        err_line(format_args!("error: {err}"));
        // Not process::exit: the main thread may be inside a collective,
        // and libtorch's static destructors would run under it (a crash or
        // a hang on Gloo's threads). Rank 0 writes checkpoints atomically,
        // so an exit mid-write leaves the previous one whole.
        // SAFETY: _exit ends the process at once; nothing is left half-done
        // that outlives it.
        unsafe { libc::_exit(err.exit_code()) };
    }
}
