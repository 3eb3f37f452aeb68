//! The VGA console's status screen during an automatic run: what a field
//! engineer watching the vSphere console sees on `tty0` — the stack and
//! migration, the phase (waiting for the manager's files, for BEGIN,
//! running), "Step n of m", the command running and for how long, its last
//! output lines, the last warnings, and at the end a success or failure
//! screen with the error's code, sentence and detail.
//!
//! The screen is off unless PID 1 calls [`enable`] (automatic mode without
//! `osam.verbose=1`): every hook below is then a cheap no-op, so
//! `fixupctl` prints as before. While the screen owns `tty0`, the plain log
//! lines no longer go there ([`Tty0Sink`]); warnings and errors show on the
//! screen instead. The serial console keeps every plain line.
//!
//! The model is [`state::UiState`], the drawing the pure
//! [`render::render`]; this module holds the one global instance, writes
//! frames to `/dev/tty0` and runs the ticker thread that redraws the clocks
//! each second. Nothing here logs while holding the screen's lock (the
//! logger calls into it), and no failure here reaches the run: a console
//! that cannot be written loses frames, nothing else.

pub mod render;
pub mod state;

use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{FixupError, Warning};
use crate::logging::{ConsoleSink, Level, Sink};
use crate::protocol::result::{ResultDoc, StackInfo, StepStatus};
use render::{DEFAULT_SIZE, Size};
use state::UiState;

/// The VGA console (the foreground virtual terminal).
pub const TTY0: &str = "/dev/tty0";

/// How often the ticker looks for something to draw.
const TICK: Duration = Duration::from_millis(250);
/// Clocks move once a second.
const CLOCK: Duration = Duration::from_secs(1);
/// A finished screen is repainted now and then, over whatever the kernel
/// printed on it (its error lines reach `tty0` through `/dev/kmsg`).
const REPAINT: Duration = Duration::from_secs(2);

struct Screen {
    state: UiState,
    tty: File,
    dirty: bool,
    last_draw: Option<Instant>,
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static SCREEN: Mutex<Option<Screen>> = Mutex::new(None);

thread_local! {
    /// Set while this thread holds [`SCREEN`]: a panic there runs the
    /// panic hook, which logs, which would come back here and wait for
    /// the lock for ever.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// The screen's lock, held by this thread.
struct Held(MutexGuard<'static, Option<Screen>>);

impl Drop for Held {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
    }
}

impl std::ops::Deref for Held {
    type Target = Option<Screen>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Takes the screen's lock; `None` when this thread already holds it.
fn lock() -> Option<Held> {
    if HOLDING.with(Cell::get) {
        return None;
    }
    let g = match SCREEN.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    HOLDING.with(|h| h.set(true));
    Some(Held(g))
}

/// Whether the screen owns `tty0` (plain log lines stay off it).
pub fn owns_console() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Takes over `tty0` for the status screen and starts the ticker. Returns
/// false (and changes nothing) when `tty0` cannot be opened.
pub fn enable(stack: &StackInfo) -> bool {
    enable_on(TTY0, stack)
}

fn enable_on(path: &str, stack: &StackInfo) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: a console stopped with Scroll Lock or Ctrl-S must not
    // stop the run; a frame that cannot be written is dropped.
    let Ok(tty) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    let mut tty = tty;
    // Clear once; never blank the screen (Linux console: `ESC [ 9 ; 0 ]`).
    let _ = tty.write_all(b"\x1b[0m\x1b[2J\x1b[9;0]");
    {
        let Some(mut g) = lock() else {
            return false;
        };
        *g = Some(Screen {
            state: UiState::new(&stack.version, &stack.arch, Instant::now()),
            tty,
            dirty: true,
            last_draw: None,
        });
        ACTIVE.store(true, Ordering::SeqCst);
        if let Some(s) = g.as_mut() {
            draw(s, Instant::now());
        }
    }
    let ticker = std::thread::Builder::new()
        .name("osam-ui".into())
        .spawn(ticker);
    // Without the ticker the screen still follows the hooks.
    drop(ticker);
    true
}

/// Gives `tty0` back to plain log lines (before a shell takes the
/// console): the last screen stays, the cursor shows again below it.
pub fn release() {
    if !owns_console() {
        return;
    }
    let Some(mut g) = lock() else {
        return;
    };
    ACTIVE.store(false, Ordering::SeqCst);
    if let Some(mut s) = g.take() {
        let rows = tty_size(&s.tty).rows;
        let _ = s
            .tty
            .write_all(format!("\x1b[0m\x1b[{rows};1H\r\n\x1b[?25h").as_bytes());
    }
}

fn ticker() {
    loop {
        std::thread::sleep(TICK);
        let Some(mut g) = lock() else {
            return;
        };
        let Some(s) = g.as_mut() else {
            return;
        };
        let now = Instant::now();
        let since = s.last_draw.map(|t| now.saturating_duration_since(t));
        let due = match since {
            None => true,
            Some(d) if s.state.ticking() => d >= CLOCK,
            Some(d) => d >= REPAINT,
        };
        if s.dirty || due {
            draw(s, now);
        }
    }
}

/// The console's size as the tty reports it (80x25 when it does not).
fn tty_size(tty: &File) -> Size {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct passed, which
    // lives for the call; the descriptor belongs to `tty`.
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if rc != 0 || ws.ws_col == 0 || ws.ws_row == 0 {
        return DEFAULT_SIZE;
    }
    Size {
        cols: usize::from(ws.ws_col),
        rows: usize::from(ws.ws_row),
    }
}

fn draw(s: &mut Screen, now: Instant) {
    let size = tty_size(&s.tty);
    let frame = render::render(&s.state.view(now), size);
    // A partial write leaves half a frame; the next one repaints it all.
    s.dirty = s.tty.write_all(frame.as_bytes()).is_err();
    s.last_draw = Some(now);
}

/// Applies `f` to the state when the screen is on; redraws at once when
/// `now` is set (structural changes), else leaves it to the ticker.
fn update(redraw_now: bool, f: impl FnOnce(&mut UiState, Instant)) {
    if !owns_console() {
        return;
    }
    let Some(mut g) = lock() else {
        return;
    };
    if let Some(s) = g.as_mut() {
        let now = Instant::now();
        f(&mut s.state, now);
        s.dirty = true;
        if redraw_now {
            draw(s, now);
        }
    }
}

/// `/tmp/fixup` and READY exist: the manager's turn.
pub fn ready(dir: &Path, transport: &str) {
    let dir = dir.display().to_string();
    update(true, |s, now| s.ready(&dir, transport, now));
}

static LAST_LOOK: Mutex<Option<Instant>> = Mutex::new(None);

/// PID 1's BEGIN loop: looks (at most once a second) which of the three
/// input files the manager has written into `dir`.
pub fn waiting(dir: &Path) {
    if !owns_console() {
        return;
    }
    let now = Instant::now();
    if let Ok(mut last) = LAST_LOOK.lock() {
        if last.is_some_and(|t| now.saturating_duration_since(t) < CLOCK) {
            return;
        }
        *last = Some(now);
    }
    use crate::protocol::config::{NETWORK_INTERFACE_MAP, REPLICA_DISK_MAP, SYSTEM_CONFIGURATION};
    let present = [
        SYSTEM_CONFIGURATION,
        REPLICA_DISK_MAP,
        NETWORK_INTERFACE_MAP,
    ]
    .map(|name| dir.join(name).exists());
    update(false, |s, _| s.inputs_present(present));
}

/// A step starts (`run_step`).
pub fn step_started(pos: (usize, usize), id: &str, migration_id: Option<&str>) {
    update(true, |s, now| s.step_started(pos, id, migration_id, now));
}

/// A step ended.
pub fn step_finished(id: &str, status: StepStatus) {
    update(true, |s, _| s.step_finished(id, status));
}

/// The step's own progress message.
pub fn activity(msg: &str) {
    update(true, |s, _| s.activity(msg));
}

/// A command starts (`StepCtx::run`).
pub fn command_started(line: &str) {
    update(true, |s, now| s.command_started(line, now));
}

/// A command ended: whether it succeeded and how.
pub fn command_finished(succeeded: bool, how: &str) {
    update(true, |s, now| s.command_finished(succeeded, how, now));
}

/// One line of the running command's output (drawn by the ticker).
pub fn output_line(line: &str) {
    update(false, |s, _| s.output_line(line));
}

/// A warning of the run (result.json's `warnings`).
pub fn warning(w: &Warning) {
    let text = format!("{}: {}", w.code, w.message);
    update(true, |s, _| s.notice(false, &text));
}

/// An error of the run, in the words PID 1 logs it with (so that the
/// screen lists it once).
pub fn error(e: &FixupError) {
    let text = format!("{}: {}", e.code, e.message);
    update(true, |s, _| s.notice(true, &text));
}

/// The run ended: `doc` is about to be written into `dir` as result.json.
pub fn finished(doc: &ResultDoc, dir: &Path) {
    let dir = dir.display().to_string();
    update(true, |s, _| s.finished_with(doc, &dir));
}

/// PID 1 stops on an error outside a run (no result shown yet).
pub fn fatal(e: &FixupError) {
    update(true, |s, now| s.fatal(e, now));
}

/// The `tty0` log sink: plain lines as before while the screen is off;
/// while it is on, warnings and errors go to the screen and the rest is
/// left to the serial console and `/dev/kmsg`.
pub struct Tty0Sink {
    inner: ConsoleSink,
}

impl Sink for Tty0Sink {
    fn write_line(&mut self, level: Level, line: &str) {
        if !owns_console() {
            self.inner.write_line(level, line);
            return;
        }
        match level {
            Level::Error => update(true, |s, _| s.notice(true, line)),
            Level::Warn => update(true, |s, _| s.notice(false, line)),
            Level::Info | Level::Debug => {}
        }
    }
}

/// The log sink for console `path`: `tty0` gets the screen-aware one.
pub fn console_sink(path: &str, console: ConsoleSink) -> Box<dyn Sink> {
    if path == TTY0 {
        Box::new(Tty0Sink { inner: console })
    } else {
        Box::new(console)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The global screen on a pseudo terminal (or a plain file where
    /// there is none): frames arrive, the plain log lines do not, and
    /// release gives the console back. One test, as the screen is global.
    #[test]
    fn the_global_screen_draws_frames_and_takes_the_log_lines() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("tty0");
        std::fs::write(&path, b"").unwrap();
        let path = path.to_str().unwrap().to_string();
        let stack = StackInfo {
            arch: "x86_64".into(),
            version: "0.1.0".into(),
            kernel: "6.1.0".into(),
        };
        assert!(!owns_console());
        // Off: hooks do nothing.
        step_started((1, 9), "validate", None);
        assert!(lock().unwrap().is_none());

        assert!(enable_on(&path, &stack));
        assert!(owns_console());
        // The ticker redraws the clock each second without any event.
        std::thread::sleep(Duration::from_millis(2300));
        let frames = std::fs::read_to_string(&path)
            .unwrap()
            .matches("\x1b[H")
            .count();
        assert!(frames >= 3, "{frames} frames");
        let console = ConsoleSink::open(&path).unwrap();
        let mut sink = console_sink(TTY0, console);
        sink.write_line(Level::Info, "plain line that must not show");
        sink.write_line(Level::Warn, "vmtoolsd is not in this stack");
        ready(Path::new("/tmp/fixup"), "9p:fixup");
        step_started((2, 9), "storage", Some("mig-9"));
        activity("waiting up to 30 s for 1 replica disk(s)");
        let e = FixupError::new("disk.not_found", "replica disk scsi0:0 did not appear")
            .in_step("storage");
        error(&e);
        step_finished("storage", StepStatus::Failed);
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.starts_with("\x1b[0m\x1b[2J"), "{written:?}");
        assert!(written.contains("Step 2 of 9: storage"));
        assert!(written.contains("migration mig-9"));
        assert!(written.contains("! vmtoolsd is not in this stack"));
        assert!(written.contains("x disk.not_found: replica disk scsi0:0"));
        assert!(!written.contains("plain line"));

        release();
        assert!(!owns_console());
        sink.write_line(Level::Info, "plain line after release");
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("osam: plain line after release\r\n"));
        assert!(written.contains("\x1b[?25h"));
    }
}
