//! PID 1 of the fixup stack. The boot flow of docs/architecture.md:
//! mounts, consoles, options, modules, transport, /tmp/fixup and READY,
//! BEGIN, stage 1, results, then wait for the manager's power-off.
//!
//! `main` never returns and never panics into a kernel panic: any error
//! or panic becomes a failed result.json + END where the fixup directory
//! exists, is logged on the consoles and `/dev/kmsg`, and PID 1 goes on
//! reaping, answering signals and keeping the console usable.

pub mod disk_transport;
pub mod guest;
pub mod mounts;
pub mod remount;
pub mod rescue;
pub mod signals;
pub mod supervise;
pub mod sysroot;
pub mod transport;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cmdline::{self, After, Mode, Options, Transport};
use crate::error::{FixupError, codes};
use crate::fsutil;
use crate::kmod::Loader;
use crate::lock::{self, Stage1Lock};
use crate::logging::{self, ConsoleSink, KmsgSink};
use crate::protocol::report::{READY, Reporter};
use crate::protocol::result::{Ready, StackInfo};
use crate::protocol::session::{self, RunOptions};
use crate::reaper;
use crate::runner::RealRunner;
use crate::runstate::{self, Phase, Tracker};
use disk_transport::{BeginAt, EspMount};
use signals::Request;
use supervise::Supervised;

/// The fixup directory once it exists, for the panic path.
static FIXUP_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// PID 1's entry point. Never returns.
pub fn main() -> ! {
    std::panic::set_hook(Box::new(|info| {
        logging::error(format!("internal error (panic): {info}"));
    }));
    let mut after = After::Wait;
    let outcome = catch_unwind(AssertUnwindSafe(|| boot(&mut after)));
    let msg = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(FixupError::new(
            codes::INTERNAL,
            "the fixup stack stopped on an internal error; the console and fixup.log show where",
        )),
    };
    if let Some(e) = msg {
        logging::error(format!("{}: {}", e.code, e.message));
        crate::ui::fatal(&e);
        write_failure(e);
    }
    finish(after)
}

/// Writes a failed result.json + END into the fixup directory, if there is
/// one and no END is there yet.
fn write_failure(e: FixupError) {
    let dir = FIXUP_DIR.lock().ok().and_then(|g| g.clone());
    let Some(dir) = dir else {
        logging::error("no fixup directory: the failure is only on the console");
        return;
    };
    if dir.join(crate::protocol::report::END).exists() {
        return;
    }
    let mut r = Reporter::create(&dir);
    r.error(e);
    if let Err(err) = r.finish() {
        logging::error(format!(
            "cannot write result.json in {}: {err}",
            dir.display()
        ));
    }
}

fn boot(after: &mut After) -> Result<(), FixupError> {
    let mount_errors = mounts::mount_table();
    for tty in ["/dev/ttyS0", "/dev/tty0"] {
        if let Ok(c) = ConsoleSink::open(tty) {
            logging::add_sink(crate::ui::console_sink(tty, c));
        }
    }
    if let Ok(k) = KmsgSink::open() {
        logging::add_sink(Box::new(k));
    }
    for e in mount_errors {
        logging::error(e.to_string());
    }
    reaper::become_subreaper_of_all();
    signals::install();
    let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let opts = cmdline::parse(&line);
    *after = opts.after;
    logging::set_verbose(opts.verbose);
    let stack = StackInfo::current();
    if opts.mode != Mode::Rescue && !opts.verbose {
        crate::ui::enable(&stack); // the status screen on tty0
    }
    logging::info(format!(
        "OSAM fixup stack {} ({}), kernel {}",
        stack.version, stack.arch, stack.kernel
    ));
    for w in &opts.warnings {
        logging::warn(format!("kernel command line: {w}"));
    }
    let _ = std::fs::create_dir_all(guest::SYSROOT);

    let mut loader = load_modules();
    if opts.mode == Mode::Rescue {
        *after = After::Shell;
        // `fixupctl status` reads the phase from the state file, as in
        // the protocol.
        let mut state = Tracker::new(&lock::run_dir(), Path::new(runstate::DEFAULT_FIXUP_DIR));
        state.save();
        load_storage_stack(&mut loader);
        logging::info("rescue mode: the guest is mounted read-only; a shell on the console");
        rescue::start(&opts);
        state.phase(
            Phase::Rescue,
            Some("no fixup runs; shells on the console".into()),
        );
        return Ok(());
    }
    protocol(&opts, &mut loader)
}

/// Coldplugs the drivers for the hardware present.
fn load_modules() -> Loader {
    let release = crate::protocol::result::kernel_release();
    let moddir = Path::new("/lib/modules").join(&release);
    let mut loader = Loader::new(&moddir);
    let start = Instant::now();
    let report = loader.coldplug(Path::new("/sys"));
    logging::info(format!(
        "modules: {} loaded for the hardware in {} ms",
        report.loaded.len(),
        start.elapsed().as_millis()
    ));
    if !report.loaded.is_empty() {
        logging::debug(format!("loaded: {}", report.loaded.join(" ")));
    }
    loader
}

/// What no device asks for but the guest's storage needs: file systems,
/// device-mapper (LVM), md RAID, loop. There is no modprobe for the
/// kernel to call, so PID 1 loads them itself; the image carries what
/// kernel-config/modules.list names.
pub const STORAGE_MODULES: &[&str] = &[
    "ext4",
    "xfs",
    "btrfs",
    "vfat",
    "isofs",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    // vfat's default iocharset (Debian's FAT_DEFAULT_IOCHARSET): the
    // guest's ESP, mounted with its own fstab options, needs it.
    "nls_ascii",
    "dm_mod",
    "dm_snapshot",
    "dm_mirror",
    "dm_thin_pool",
    "md_mod",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
    "loop",
];

fn load_storage_stack(loader: &mut Loader) {
    let mut loaded = 0;
    for m in STORAGE_MODULES {
        match loader.load(m) {
            Ok(new) => loaded += new.len(),
            Err(e) => logging::debug(format!("module {m}: {e}")),
        }
    }
    logging::info(format!(
        "modules: {loaded} loaded for file systems, LVM and md"
    ));
}

/// Creates the fixup directory afresh and writes READY.
pub fn prepare_fixup_dir(dir: &Path, transport: &Transport) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.symlink_metadata().is_ok() {
        logging::info(format!("removing the stale {}", dir.display()));
        fsutil::remove_any(dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    // The umask may have narrowed it; 0700 exactly.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let stack = StackInfo::current();
    let ready = Ready {
        version: stack.version,
        arch: stack.arch,
        kernel: stack.kernel,
        transport: transport.as_string(),
        protocol_version: 1,
    };
    let mut json = serde_json::to_vec_pretty(&ready).map_err(std::io::Error::other)?;
    json.push(b'\n');
    fsutil::write_atomic(&dir.join(READY), &json, 0o644)?;
    if let Some(parent) = dir.parent() {
        let _ = fsutil::sync_dir(parent);
    }
    Ok(())
}

fn protocol(opts: &Options, loader: &mut Loader) -> Result<(), FixupError> {
    let mut state = Tracker::new(&lock::run_dir(), Path::new(runstate::DEFAULT_FIXUP_DIR));
    // Creates /run/osam: from here on the stage-1 lock is the machine's.
    state.save();
    let mut channel = match transport::setup(opts, loader) {
        Ok(c) => c,
        Err(e) => {
            state.phase(Phase::Failed, Some(format!("{}: {}", e.code, e.message)));
            return Err(e);
        }
    };
    state.state.transport = Some(channel.transport.as_string());
    state.state.esp = channel.esp.as_ref().map(EspMount::info);
    let mut tools = match channel.transport {
        Transport::Vmtools => {
            let s = Supervised::vmtoolsd(transport::is_vmware(Path::new("/sys")));
            if s.is_none() {
                logging::warn("vmtoolsd is not in this stack: the manager cannot reach /tmp/fixup");
            }
            s
        }
        _ => None,
    };
    let dir = channel.fixup_dir.clone();
    if let Err(e) = prepare_fixup_dir(&dir, &channel.transport) {
        let e = FixupError::new(
            codes::TRANSPORT_FAILED,
            format!("cannot create {}: {e}", dir.display()),
        );
        state.phase(Phase::Failed, Some(format!("{}: {}", e.code, e.message)));
        return Err(e);
    }
    if let Ok(mut g) = FIXUP_DIR.lock() {
        *g = Some(dir.clone());
    }
    let mut shells = WaitShells::default();
    let offer_shells = channel.transport == Transport::Disk;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        serve(
            opts,
            loader,
            &dir,
            &mut state,
            channel.esp.as_mut(),
            tools.as_mut(),
            offer_shells.then_some(&mut shells),
        )
    }))
    .unwrap_or_else(|_| {
        Err(FixupError::new(
            codes::INTERNAL,
            "the fixup stack stopped on an internal error; the console and fixup.log show where",
        ))
    });
    if let Err(e) = &outcome {
        write_failure(e.clone());
        state.finished("failed", Some(format!("{}: {}", e.code, e.message)));
    }
    if let Some(esp) = channel.esp.as_mut() {
        results_to_esp(esp, &dir);
    }
    if opts.after == After::Shell {
        // The shell loop takes the consoles over.
        shells.stop();
    }
    outcome
}

/// Waits for BEGIN, takes the stage-1 lock and runs stage 1 in `dir`.
fn serve(
    opts: &Options,
    loader: &mut Loader,
    dir: &Path,
    state: &mut Tracker,
    mut esp: Option<&mut EspMount>,
    tools: Option<&mut Supervised>,
    shells: Option<&mut WaitShells>,
) -> Result<(), FixupError> {
    let esp_fixup = esp.as_deref().map(EspMount::fixup_dir);
    if let Some(from) = &esp_fixup {
        import_from_esp(from, dir);
    }
    logging::info(format!(
        "ready: {} created ({}); waiting for BEGIN",
        dir.display(),
        state.state.transport.as_deref().unwrap_or("?")
    ));
    crate::ui::ready(dir, state.state.transport.as_deref().unwrap_or("?"));
    let begin = wait_for_begin(opts, dir, esp.as_deref_mut(), state, tools, shells)?;
    if let (BeginAt::Esp, Some(from)) = (begin, &esp_fixup) {
        import_from_esp(from, dir);
    }
    let scope = lock::scope(&state.run_dir, Path::new(guest::SYSROOT));
    let _lock = Stage1Lock::acquire(&scope, "osam-init")
        .map_err(|e| FixupError::new(codes::STAGE1_LOCKED, e.to_string()))?;
    if let (Some(esp), Some(esp_dir)) = (esp, &esp_fixup) {
        // BEGIN is consumed and the last results go; the ESP stays
        // read-only (clean) while stage 1 runs.
        if let Err(e) = disk_transport::start_run(esp_dir) {
            logging::warn(format!(
                "disk transport: clearing {}: {e}",
                esp_dir.display()
            ));
        }
        if let Err(e) = esp.set_read_only(true) {
            logging::warn(format!("disk transport: {e}"));
        }
    }
    logging::info("BEGIN: starting stage 1");
    state.phase(Phase::Running, None);
    // Needed only from here on: loaded after READY, so the manager sees
    // the stack sooner.
    load_storage_stack(loader);
    let mut provider = guest::StackGuest::new(opts.disk_timeout);
    let mut runner = RealRunner {
        cancel: Some(&signals::STOP),
    };
    let run_opts = RunOptions {
        offline: false,
        state: Some(state.clone()),
        test_hold: true,
    };
    match session::run(dir, &mut provider, &mut runner, &run_opts) {
        Ok(doc) => {
            let ok = doc.errors.is_empty();
            logging::info(format!(
                "stage 1 {}: result.json and END written",
                if ok { "succeeded" } else { "FAILED" }
            ));
            for e in &doc.errors {
                logging::error(format!("{}: {}", e.code, e.message));
            }
            let first = doc
                .errors
                .first()
                .map(|e| format!("{}: {}", e.code, e.message));
            state.finished(if ok { "success" } else { "failed" }, first);
            Ok(())
        }
        Err(e) => Err(FixupError::new(
            codes::TRANSPORT_FAILED,
            format!("cannot write the results into {}: {e}", dir.display()),
        )),
    }
}

/// Polls for BEGIN in `dir` and, with the disk transport, in the ESP's
/// folder (9p delivers no events for host writes), keeping the state file
/// up to date, reaping, supervising vmtoolsd and answering signals.
fn wait_for_begin(
    opts: &Options,
    dir: &Path,
    mut esp: Option<&mut EspMount>,
    state: &mut Tracker,
    mut tools: Option<&mut Supervised>,
    mut shells: Option<&mut WaitShells>,
) -> Result<BeginAt, FixupError> {
    let esp_fixup = esp.as_deref().map(EspMount::fixup_dir);
    let start = Instant::now();
    let mut next_note = Duration::from_secs(60);
    let mut first = true;
    loop {
        if let Some(at) = disk_transport::begin_at(dir, esp_fixup.as_deref()) {
            return Ok(at);
        }
        if first {
            first = false;
            if let Some(s) = shells.as_deref_mut() {
                logging::info(format!(
                    "no BEGIN yet: from the shell on the console, put the input files \
                     and BEGIN into {} (the fixup disk's /fixup) or into {}",
                    esp_fixup
                        .as_deref()
                        .map_or_else(|| "-".to_string(), |p| p.display().to_string()),
                    dir.display()
                ));
                s.start();
            }
        }
        let missing: Vec<&str> = runstate::missing_inputs(dir)
            .into_iter()
            .filter(|f| !esp_fixup.as_deref().is_some_and(|e| e.join(f).is_file()))
            .collect();
        if missing.is_empty() {
            state.phase(Phase::WaitingForBegin, None);
        } else {
            state.phase(
                Phase::WaitingForFiles,
                Some(format!("missing {}", missing.join(", "))),
            );
        }
        if let Some(t) = opts.begin_timeout {
            if start.elapsed() >= t {
                return Err(FixupError::new(
                    codes::BEGIN_TIMEOUT,
                    format!(
                        "BEGIN did not appear in {} within {} s (osam.begin_timeout)",
                        dir.display(),
                        t.as_secs()
                    ),
                ));
            }
        }
        if let Some(req) = signals::pending() {
            logging::info(format!("{req:?} requested while waiting for BEGIN"));
            if let Some(esp) = esp.as_deref_mut() {
                let _ = esp.unmount();
            }
            stop(req);
        }
        if start.elapsed() >= next_note {
            logging::info(format!(
                "still waiting for BEGIN in {} ({} s)",
                dir.display(),
                start.elapsed().as_secs()
            ));
            next_note += Duration::from_secs(60);
        }
        if let Some(t) = tools.as_deref_mut() {
            t.poll();
        }
        if let Some(s) = shells.as_deref_mut() {
            s.poll();
        }
        crate::ui::waiting(dir);
        reaper::reap();
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Copies the ESP's input files into the fixup directory (logged).
fn import_from_esp(esp_fixup: &Path, dir: &Path) {
    match disk_transport::import_inputs(esp_fixup, dir) {
        Ok(names) if names.is_empty() => logging::info(format!(
            "disk transport: no input files in {} yet",
            esp_fixup.display()
        )),
        Ok(names) => logging::info(format!(
            "disk transport: copied {} from {}",
            names.join(", "),
            esp_fixup.display()
        )),
        Err(e) => logging::error(format!(
            "disk transport: copying the input files from {}: {e}",
            esp_fixup.display()
        )),
    }
}

/// Writes the results back to the ESP's folder (END last), syncs and
/// unmounts it. Failures are logged: the results stay in /tmp/fixup.
fn results_to_esp(esp: &mut EspMount, dir: &Path) {
    if let Err(e) = esp.set_read_only(false) {
        logging::error(format!("disk transport: {e}"));
    }
    let target = esp.fixup_dir();
    match disk_transport::export_results(dir, &target) {
        Ok(written) => logging::info(format!(
            "disk transport: {} written to /{}/ on {}",
            written.join(", "),
            disk_transport::ESP_FIXUP_DIR,
            esp.location.device.display()
        )),
        Err(e) => logging::error(format!(
            "disk transport: cannot write the results to {}: {e}; they are only in {}",
            target.display(),
            dir.display()
        )),
    }
    match esp.unmount() {
        Ok(()) => logging::info(format!(
            "disk transport: {} synced and unmounted",
            esp.location.device.display()
        )),
        Err(e) => logging::warn(format!("disk transport: {e}")),
    }
}

/// Shells on the consoles while the disk transport waits for BEGIN, so
/// that an engineer can put the files in place; restarted when they exit
/// (at most every 2 s), given up on a console that cannot be opened.
#[derive(Debug, Default)]
struct WaitShells {
    shell: Option<&'static str>,
    consoles: Vec<WaitShell>,
}

#[derive(Debug)]
struct WaitShell {
    tty: &'static str,
    pid: Option<i32>,
    last_start: Option<Instant>,
    given_up: bool,
}

impl WaitShells {
    fn start(&mut self) {
        self.shell = ["/bin/sh", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        if self.shell.is_none() {
            logging::warn("no shell in this stack");
            return;
        }
        crate::ui::release(); // the shells take the consoles
        self.consoles = ["/dev/ttyS0", "/dev/tty1"]
            .into_iter()
            .map(|tty| WaitShell {
                tty,
                pid: None,
                last_start: None,
                given_up: false,
            })
            .collect();
        self.poll();
    }

    fn poll(&mut self) {
        let Some(sh) = self.shell else {
            return;
        };
        for c in &mut self.consoles {
            if let Some(p) = c.pid {
                if reaper::try_exit(p).is_none() {
                    continue;
                }
                c.pid = None;
            }
            if c.given_up
                || c.last_start
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
            {
                continue;
            }
            c.pid = spawn_shell(sh, c.tty);
            c.last_start = Some(Instant::now());
            c.given_up = c.pid.is_none();
        }
    }

    fn stop(&mut self) {
        for c in &mut self.consoles {
            if let Some(p) = c.pid.take() {
                // The shell leads its own session (setsid): its group goes.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            c.given_up = true;
        }
        reaper::reap();
    }
}

/// Syncs and powers off or reboots. Never returns.
fn stop(req: Request) -> ! {
    logging::info(format!("{req:?}: syncing"));
    nix::unistd::sync();
    let r = match req {
        Request::Poweroff => nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF),
        Request::Reboot => nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT),
    };
    // reboot(2) returns only when it failed.
    let Err(e) = r;
    logging::error(format!("{req:?} failed: {e}"));
    idle()
}

/// What happens after the run (`osam.after=`). Never returns.
fn finish(after: After) -> ! {
    match after {
        After::Poweroff => stop(Request::Poweroff),
        After::Shell => {
            crate::ui::release();
            shell_loop();
        }
        After::Wait => {
            logging::info("done: waiting for power-off");
        }
    }
    idle()
}

/// Reaps and answers signals for ever.
fn idle() -> ! {
    loop {
        reaper::reap();
        if let Some(req) = signals::pending() {
            signals::STOP.store(false, std::sync::atomic::Ordering::SeqCst);
            stop(req);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Shells on the serial console and the first virtual terminal, restarted
/// when they exit. Without a shell in the image, returns.
fn shell_loop() {
    let Some(sh) = ["/bin/sh", "/bin/busybox"]
        .iter()
        .find(|p| Path::new(p).exists())
    else {
        logging::warn("no shell in this stack; waiting for power-off");
        return;
    };
    let ttys = ["/dev/ttyS0", "/dev/tty1"];
    let mut pids: Vec<Option<i32>> = vec![None; ttys.len()];
    loop {
        for (i, tty) in ttys.iter().enumerate() {
            if let Some(pid) = pids[i] {
                if reaper::try_exit(pid).is_some() {
                    pids[i] = None;
                }
            }
            if pids[i].is_none() {
                pids[i] = spawn_shell(sh, tty);
            }
        }
        reaper::reap();
        if let Some(req) = signals::pending() {
            stop(req);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn spawn_shell(sh: &str, tty: &str) -> Option<i32> {
    use std::os::unix::process::CommandExt;
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(tty)
            .ok()
    };
    let (i, o, e) = (open()?, open()?, open()?);
    let mut c = std::process::Command::new(sh);
    if sh.ends_with("busybox") {
        c.arg("sh");
    }
    c.stdin(i)
        .stdout(o)
        .stderr(e)
        .env_clear()
        .env("PATH", crate::runner::DEFAULT_PATH)
        .env("HOME", "/root")
        .env("TERM", "linux")
        .env("PS1", "osam# ");
    // SAFETY: runs in the child before exec; setsid and ioctl are
    // async-signal-safe and touch no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    match c.spawn() {
        Ok(child) => {
            let pid = child.id() as i32;
            reaper::register(pid);
            Some(pid)
        }
        Err(e) => {
            logging::warn(format!("cannot start a shell on {tty}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepares_a_fresh_fixup_dir_with_ready() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("fixup");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("END"), b"").unwrap();
        std::fs::write(dir.join("result.json"), b"{}").unwrap();
        prepare_fixup_dir(&dir, &Transport::NineP("fixup".into())).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["READY".to_string()]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        let ready: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("READY")).unwrap()).unwrap();
        assert_eq!(ready["transport"], "9p:fixup");
        assert_eq!(ready["arch"], crate::STACK_ARCH);
    }
}
