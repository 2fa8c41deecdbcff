//! The store calls beside the handshake's: an atomic counter, the claim of
//! a rank's place, and what a store that cannot be made means.

use std::ffi::{c_char, c_void};

use super::{cstring, err_text, Launch, Rendezvous, ERR_LEN};
use crate::error::GdaError;

extern "C" {
    fn gda_store_add(g: *mut c_void, key: *const c_char, delta: i64, out: *mut i64, err: *mut c_char, n: usize) -> i32;
}

/// Adds `delta` to the store counter `key` and returns its new value
/// (`delta` 0 reads it, without waiting for the key as a get would).
pub(super) fn store_add(ptr: *mut c_void, key: &str, delta: i64) -> Result<i64, String> {
    let key = cstring(key);
    let (mut out, mut err) = (0i64, [0u8; ERR_LEN]);
    // SAFETY: `ptr` is a live store from the shim; key, out and err outlive the call.
    let rc = unsafe { gda_store_add(ptr, key.as_ptr(), delta, &mut out, err.as_mut_ptr() as *mut c_char, ERR_LEN) };
    if rc == 0 {
        Ok(out)
    } else {
        Err(err_text(&err))
    }
}

/// Why the store could not be made: a port in use for rank 0, which
/// serves it, else an address that did not answer.
pub(super) fn unreachable(rendezvous: &Rendezvous, rank: usize, secs: u64, err: &str) -> String {
    match rendezvous {
        Rendezvous::Tcp { port, .. } if rank == 0 && err.contains("EADDRINUSE") => format!(
            "cannot serve {rendezvous}: port {port} is in use (another run's store? give each run its own MASTER_PORT): {err}"
        ),
        _ => format!("cannot reach {rendezvous} within {secs} s (is MASTER_ADDR:MASTER_PORT rank 0's?): {err}"),
    }
}

/// Refuses, for rank 0, a port another process listens on. c10d's server
/// binds with SO_REUSEPORT, so a second run's store would bind beside the
/// first's and the kernel would share the connections out between the two;
/// a plain bind (no SO_REUSEPORT) fails against either.
pub(super) fn check_port_free(launch: &Launch) -> Result<(), GdaError> {
    let Rendezvous::Tcp { port, .. } = &launch.rendezvous else { return Ok(()) };
    if launch.rank != 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(("0.0.0.0", *port)) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(GdaError::PeerLost {
            rank: 0,
            msg: unreachable(&launch.rendezvous, 0, 0, &format!("{e} (EADDRINUSE)")),
        }),
        // Anything else is c10d's to report, as it binds next.
        _ => Ok(()),
    }
}

/// Takes this rank's place in the store. A second run started with the same
/// MASTER_PORT finds the first run's store: its ranks are refused here,
/// before they write a greeting or a heartbeat into that run's store.
pub(super) fn claim(ptr: *mut c_void, launch: &Launch) -> Result<(), GdaError> {
    let rank = launch.rank;
    let lost = |msg: String| GdaError::PeerLost { rank, msg };
    let taken = store_add(ptr, &format!("gda/rank/{rank}"), 1)
        .map_err(|e| lost(format!("cannot write to {}: {e}", launch.rendezvous)))?;
    if taken != 1 {
        let fix = match &launch.rendezvous {
            Rendezvous::Tcp { port, .. } => format!("port {port} (MASTER_PORT): give each run its own port"),
            Rendezvous::File(_) => "it: give each run its own store file".into(),
        };
        return Err(lost(format!("{} already has a rank {rank}: another run uses {fix}", launch.rendezvous)));
    }
    Ok(())
}
