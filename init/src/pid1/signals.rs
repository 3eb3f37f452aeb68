//! Signals to PID 1. The kernel delivers to PID 1 only the signals it has a
//! handler for; the handlers only set flags, and the main loops act on
//! them: SIGTERM, SIGUSR2 and SIGPWR ask for a power-off (after the run in
//! progress stops cleanly), SIGINT (Ctrl-Alt-Del once the kernel hands it
//! to init) for a reboot. SIGCHLD needs no handler: children are reaped by
//! polling (see `reaper`).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Set by any stop request; also aborts a running command.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// The last stop signal received.
static LAST: AtomicI32 = AtomicI32::new(0);

/// What a stop request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Poweroff,
    Reboot,
}

/// Maps a signal to a request (pure; table-tested).
pub fn request_for(sig: i32) -> Option<Request> {
    match Signal::try_from(sig).ok()? {
        Signal::SIGTERM | Signal::SIGUSR2 | Signal::SIGPWR => Some(Request::Poweroff),
        Signal::SIGINT => Some(Request::Reboot),
        _ => None,
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    LAST.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handlers and hands Ctrl-Alt-Del to PID 1 as SIGINT.
pub fn install() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR2,
        Signal::SIGPWR,
    ] {
        // SAFETY: the handler only stores to atomics, which is
        // async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
    // SIGPIPE would kill PID 1 when a console or a pipe goes away.
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring a signal installs no code.
    let _ = unsafe { sigaction(Signal::SIGPIPE, &ignore) };
    let _ = nix::sys::reboot::set_cad_enabled(false);
}

/// The pending stop request, if any.
pub fn pending() -> Option<Request> {
    if STOP.load(Ordering::SeqCst) {
        request_for(LAST.load(Ordering::SeqCst)).or(Some(Request::Poweroff))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_requests() {
        let cases = [
            (libc::SIGTERM, Some(Request::Poweroff)),
            (libc::SIGUSR2, Some(Request::Poweroff)),
            (libc::SIGPWR, Some(Request::Poweroff)),
            (libc::SIGINT, Some(Request::Reboot)),
            (libc::SIGHUP, None),
            (9999, None),
        ];
        for (sig, want) in cases {
            assert_eq!(request_for(sig), want, "{sig}");
        }
    }
}
