//! A test-only hook (docs/protocol.md, "Test hook"): when the fixup
//! directory holds a file named [`HOLD_FILE`] whose content is a step id,
//! PID 1 makes every guest write durable (sync) just before that step
//! starts, says so in progress.txt, fixup.log and on the console, and
//! waits until the file is removed — for at most [`MAX_HOLD`], then goes
//! on with a warning. The QEMU fault tests use it to cut the VM's power at
//! a step boundary. Managers must not use it.
//!
//! It never fails the run: an unreadable file is ignored.

use std::path::Path;
use std::time::{Duration, Instant};

/// The hook's file in the fixup directory.
pub const HOLD_FILE: &str = "osam-test-hold";
/// The longest hold; then the run goes on with a warning.
pub const MAX_HOLD: Duration = Duration::from_secs(600);
/// How often the file is looked at (9p delivers no events).
const POLL: Duration = Duration::from_millis(200);

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// No hold asked for this step.
    None,
    /// The file was removed after this long.
    Released(Duration),
    /// The file was still there after the longest hold.
    TimedOut,
}

/// The step id `dir`'s hold file asks to hold before, if any.
pub fn requested(dir: &Path) -> Option<String> {
    use std::io::Read;
    // A step id is short: a huge file is not read whole into PID 1.
    let mut text = Vec::new();
    std::fs::File::open(dir.join(HOLD_FILE))
        .ok()?
        .take(256)
        .read_to_end(&mut text)
        .ok()?;
    let id = String::from_utf8_lossy(&text).trim().to_string();
    (!id.is_empty()).then_some(id)
}

/// Holds before step `id` when `dir`'s hold file names it: `announce` is
/// called once (after the sync) with the line to report, then the file is
/// polled every `poll` until it is gone or `max` has passed.
pub fn hold_before(
    dir: &Path,
    id: &str,
    max: Duration,
    poll: Duration,
    announce: &mut dyn FnMut(&str),
) -> Hold {
    if requested(dir).as_deref() != Some(id) {
        return Hold::None;
    }
    // What the steps before wrote is on disk before anyone cuts the power.
    nix::unistd::sync();
    announce(&format!(
        "test hook: holding before step {id} ({HOLD_FILE}; guest writes synced)"
    ));
    let start = Instant::now();
    while dir.join(HOLD_FILE).exists() {
        if start.elapsed() >= max {
            return Hold::TimedOut;
        }
        std::thread::sleep(poll);
    }
    Hold::Released(start.elapsed())
}

/// [`hold_before`] with the stack's limits.
pub fn hold_before_step(dir: &Path, id: &str, announce: &mut dyn FnMut(&str)) -> Hold {
    hold_before(dir, id, MAX_HOLD, POLL, announce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_or_another_step_does_not_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let mut say = |l: &str| lines.push(l.to_string());
        let fast = Duration::from_millis(1);
        assert_eq!(
            hold_before(dir.path(), "fstab", fast, fast, &mut say),
            Hold::None
        );
        std::fs::write(dir.path().join(HOLD_FILE), "initramfs\n").unwrap();
        assert_eq!(
            hold_before(dir.path(), "fstab", fast, fast, &mut say),
            Hold::None
        );
        std::fs::write(dir.path().join(HOLD_FILE), "").unwrap();
        assert_eq!(
            hold_before(dir.path(), "fstab", fast, fast, &mut say),
            Hold::None
        );
        assert!(lines.is_empty());
    }

    #[test]
    fn holds_until_the_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(HOLD_FILE);
        std::fs::write(&file, " initramfs\n").unwrap();
        // The file goes once the hold is announced (as the test manager
        // does it), not on a timer.
        let (announced, heard) = std::sync::mpsc::channel::<()>();
        let remover = {
            let file = file.clone();
            std::thread::spawn(move || {
                heard.recv().unwrap();
                std::thread::sleep(Duration::from_millis(50));
                std::fs::remove_file(&file)
            })
        };
        let mut lines = Vec::new();
        let hold = hold_before(
            dir.path(),
            "initramfs",
            Duration::from_secs(60),
            Duration::from_millis(5),
            &mut |l: &str| {
                lines.push(l.to_string());
                let _ = announced.send(());
            },
        );
        remover.join().unwrap().unwrap();
        assert!(
            matches!(hold, Hold::Released(d) if d >= Duration::from_millis(40)),
            "{hold:?}"
        );
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("holding before step initramfs"));
    }

    #[test]
    fn a_hold_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HOLD_FILE), "bootloader").unwrap();
        let hold = hold_before(
            dir.path(),
            "bootloader",
            Duration::from_millis(30),
            Duration::from_millis(5),
            &mut |_: &str| {},
        );
        assert_eq!(hold, Hold::TimedOut);
    }
}
