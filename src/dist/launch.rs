//! `gda train --nproc N`: N ranks on this machine, as `torchrun --standalone`
//! starts them. Each rank is this same executable with the same arguments
//! (less `--nproc`) and torchrun's environment, meeting through a FileStore
//! at a fresh path, so two runs on one machine never meet each other.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{io, GdaError};

/// The arguments of this process without `--nproc N` / `--nproc=N`.
pub fn without_nproc(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        match a.to_str() {
            Some("--nproc") => skip = true,
            Some(s) if s.starts_with("--nproc=") => {}
            _ => out.push(a.clone()),
        }
    }
    out
}

/// A store path no other run uses: pid, time and a counter.
fn fresh_store_path() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::env::temp_dir().join(format!("gda-store-{}-{nanos}-{n}", std::process::id()))
}

/// Starts `n` ranks running `gda <args>`, forwards an interrupt of this
/// process to them (`interrupted` is polled), and waits for all. When one
/// rank fails, the others get [`super::watchdog::BOUND`] (`timeout` after an
/// interrupt) plus a grace period to notice and exit on their own (they
/// report the lost peer), then are killed. Ok when
/// every rank succeeded; else [`GdaError::RanksFailed`] with the exit code of
/// rank 0 if it failed, else of the first rank that did.
pub fn local(n: usize, args: &[OsString], timeout: Duration, interrupted: fn() -> bool) -> Result<(), GdaError> {
    let exe = std::env::current_exe().map_err(io("cannot find", std::path::Path::new("/proc/self/exe")))?;
    let store = fresh_store_path();
    let children = spawn(n, args, exe, &store)?;
    let ended = wait_all(children, timeout, interrupted);
    let _ = std::fs::remove_file(&store);
    outcome(&ended)
}

/// Starts the `n` ranks with torchrun's environment, meeting at `store`;
/// if one cannot start, those already started are killed.
fn spawn(n: usize, args: &[OsString], exe: PathBuf, store: &Path) -> Result<Vec<Option<Child>>, GdaError> {
    let mut children: Vec<Option<Child>> = Vec::with_capacity(n);
    for rank in 0..n {
        let child = Command::new(&exe)
            .args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("GDA_STORE_FILE", store)
            .spawn();
        match child {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                for c in children.iter_mut().flatten() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(GdaError::Io { what: "cannot start a rank from", path: exe, source: e });
            }
        }
    }
    Ok(children)
}

/// Waits for every rank, forwarding an interrupt once and killing the ranks
/// left a grace period after the first failure; returns how each ended.
fn wait_all(mut children: Vec<Option<Child>>, timeout: Duration, interrupted: fn() -> bool) -> Vec<ExitStatus> {
    let mut ended: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut forwarded = false;
    let mut kill_at: Option<Instant> = None;
    while ended.iter().any(Option::is_none) {
        std::thread::sleep(Duration::from_millis(20));
        if interrupted() && !forwarded {
            forwarded = true;
            // A terminal's Ctrl-C reached the ranks too; they take a repeat
            // within a second as the same interrupt.
            for c in children.iter().flatten() {
                // SAFETY: kill(2) on a child this process started and has not reaped.
                unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            }
        }
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            if let Ok(Some(status)) = c.try_wait() {
                ended[rank] = Some(status);
                *slot = None;
                if !status.success() && kill_at.is_none() {
                    // After an interrupt rank 0 may still be writing its
                    // checkpoint; after a failure a live peer stops on its
                    // own (a closed socket, or its watchdog), so one that
                    // is left after the bound is itself stopped or hung.
                    let grace = if status.code() == Some(130) { timeout } else { super::watchdog::BOUND };
                    kill_at = Some(Instant::now() + grace + Duration::from_secs(10));
                }
            }
        }
        if kill_at.is_some_and(|t| Instant::now() > t) {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
        }
    }
    ended.into_iter().flatten().collect()
}

/// The run's result from how its ranks ended (see [`local`]).
fn outcome(ended: &[ExitStatus]) -> Result<(), GdaError> {
    let n = ended.len();
    let failed: Vec<(usize, ExitStatus)> =
        ended.iter().enumerate().filter(|(_, s)| !s.success()).map(|(r, s)| (r, *s)).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let describe = |(r, s): &(usize, ExitStatus)| match (s.code(), s.signal()) {
        (Some(c), _) => format!("rank {r} exited with code {c}"),
        (None, Some(sig)) => format!("rank {r} was killed by signal {sig}"),
        _ => format!("rank {r} ended ({s})"),
    };
    if failed.len() == n && failed.iter().all(|(_, s)| s.code() == Some(130)) {
        return Err(GdaError::RanksFailed {
            code: 130,
            summary: format!(
                "interrupted: all {n} ranks stopped after the same step (rank 0's message above names its checkpoint)"
            ),
        });
    }
    // Rank 0 holds the run directory; its code is the run's.
    let code = failed.iter().find_map(|(_, s)| s.code()).unwrap_or(1);
    let code = failed.iter().find(|(r, _)| *r == 0).and_then(|(_, s)| s.code()).unwrap_or(code);
    Err(GdaError::RanksFailed {
        code,
        summary: format!(
            "{} of {n} ranks failed: {}",
            failed.len(),
            failed.iter().map(describe).collect::<Vec<_>>().join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nproc_is_removed_in_both_spellings() {
        let args: Vec<OsString> =
            ["train", "--nproc", "2", "--spec", "s.toml", "--nproc=3", "--resume"].iter().map(OsString::from).collect();
        let kept: Vec<String> = without_nproc(&args).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(kept, ["train", "--spec", "s.toml", "--resume"]);
    }
}
