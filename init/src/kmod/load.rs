//! The executor: inserting modules into the running kernel and the
//! coldplug loop. Everything it decides comes from [`ModuleIndex`]; the
//! only system calls are `finit_module(2)` / `init_module(2)` and reads.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module, init_module};

use super::{KmodError, ModuleIndex, kernel_release, loaded_modules, module_name, normalize_name};
use crate::logging::{debug, info, warn};

/// The largest module accepted, compressed or not (the biggest in-tree
/// modules are around 20 MiB uncompressed).
const MAX_MODULE_SIZE: usize = 64 << 20;
/// How many times coldplug rescans sysfs at most.
const COLDPLUG_MAX_PASSES: usize = 5;
/// How long coldplug lets probes that loading started settle before it
/// rescans.
const COLDPLUG_SETTLE: Duration = Duration::from_millis(100);
const PROC_MODULES: &str = "/proc/modules";

/// How a module file gets into the kernel: the real system calls, or a
/// stand-in for tests and dry runs. Called with the module's name and
/// its full path.
pub type InsertFn = Box<dyn FnMut(&str, &Path) -> Result<(), KmodError>>;

/// What [`Loader::coldplug`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColdplugReport {
    /// How many scans of sysfs found new devices.
    pub passes: usize,
    /// How many distinct modaliases were seen.
    pub modaliases: usize,
    /// The modules loaded, in order (dependencies included).
    pub loaded: Vec<String>,
    /// The modules that failed to load: (module name, error sentence).
    pub failed: Vec<(String, String)>,
}

/// Loads kernel modules of one kernel, remembering what is loaded.
pub struct Loader {
    moddir: PathBuf,
    index: ModuleIndex,
    loaded: HashSet<String>,
    /// Modules that failed, so coldplug does not retry them every pass.
    failed: HashMap<String, String>,
    /// Where to refresh the loaded set from (`None`: never).
    proc_modules: Option<PathBuf>,
    insert: InsertFn,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("moddir", &self.moddir)
            .field("modules", &self.index.len())
            .field("loaded", &self.loaded.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Loader {
    /// A loader for the modules under `moddir` (such as
    /// `/lib/modules/6.1.0-18-amd64`), inserting them into the running
    /// kernel. PID 1 carries on without modules: when the index cannot be
    /// read (a kernel with every driver built in has no `modules.dep`),
    /// this logs a warning and the loader knows no module.
    pub fn new(moddir: &Path) -> Loader {
        Loader::try_new(moddir).unwrap_or_else(|e| {
            warn(format!("no kernel modules can be loaded: {e}"));
            let mut loader = Loader::with_inserter(
                moddir,
                ModuleIndex::default(),
                HashSet::new(),
                Box::new(|name: &str, path: &Path| insert_module(name, path)),
            );
            loader.proc_modules = Some(PathBuf::from(PROC_MODULES));
            loader.refresh_loaded();
            loader
        })
    }

    /// Like [`Loader::new`], but fails when `modules.dep` cannot be read.
    pub fn try_new(moddir: &Path) -> Result<Loader, KmodError> {
        let index = ModuleIndex::load(moddir)?;
        let mut loader = Loader::with_inserter(
            moddir,
            index,
            HashSet::new(),
            Box::new(|name: &str, path: &Path| insert_module(name, path)),
        );
        loader.proc_modules = Some(PathBuf::from(PROC_MODULES));
        loader.refresh_loaded();
        Ok(loader)
    }

    /// A loader for the running kernel: `/lib/modules/<uname -r>`.
    pub fn for_running_kernel() -> Loader {
        Loader::new(&Path::new("/lib/modules").join(kernel_release()))
    }

    /// A loader with a given index, set of already loaded modules, and
    /// insertion function (called with the module name and full path;
    /// returning an error for which [`KmodError::is_already_loaded`] holds
    /// counts as success). For tests and dry runs; `/proc/modules` is not
    /// consulted.
    pub fn with_inserter(
        moddir: &Path,
        index: ModuleIndex,
        loaded: HashSet<String>,
        insert: InsertFn,
    ) -> Loader {
        Loader {
            moddir: moddir.to_path_buf(),
            index,
            loaded,
            failed: HashMap::new(),
            proc_modules: None,
            insert,
        }
    }

    /// The module index in use.
    pub fn index(&self) -> &ModuleIndex {
        &self.index
    }

    /// The module directory.
    pub fn moddir(&self) -> &Path {
        &self.moddir
    }

    /// Whether `name` is loaded (as far as this loader knows) or built in.
    pub fn is_loaded(&self, name: &str) -> bool {
        let name = normalize_name(name);
        self.loaded.contains(&name) || self.index.is_builtin(&name)
    }

    /// Re-reads `/proc/modules` (modules may come and go behind our back).
    fn refresh_loaded(&mut self) {
        let Some(path) = &self.proc_modules else {
            return;
        };
        match std::fs::read_to_string(path) {
            Ok(text) => self.loaded.extend(loaded_modules(&text)),
            Err(e) => debug(format!("reading {}: {e}", path.display())),
        }
    }

    /// Loads a module by name or alias (`vmw_pvscsi`, `fs-ext4`,
    /// `pci:v...`), dependencies first, skipping what is built in or
    /// already loaded. An alias may stand for several modules; all are
    /// loaded. Returns the modules newly loaded (dependencies included).
    ///
    /// A module that fails is logged with its errno and the rest carries
    /// on; the call fails only when the requested module (every one of
    /// them, for an alias) could not be loaded.
    pub fn load(&mut self, name_or_alias: &str) -> Result<Vec<String>, KmodError> {
        let targets = self.index.resolve(name_or_alias);
        if targets.is_empty() {
            return Err(KmodError::UnknownModule {
                name: name_or_alias.to_string(),
            });
        }
        self.refresh_loaded();
        let mut newly = Vec::new();
        let mut failures = Vec::new();
        let mut last_error = None;
        let mut any_ok = false;
        for target in &targets {
            match self.load_module(target, &mut newly, &mut failures) {
                Ok(()) => any_ok = true,
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) if !any_ok => Err(e),
            _ => Ok(newly),
        }
    }

    /// Loads one module (by name) with its dependencies. Newly loaded
    /// modules go to `newly`, failed ones (dependencies too) to `failures`.
    fn load_module(
        &mut self,
        name: &str,
        newly: &mut Vec<String>,
        failures: &mut Vec<(String, String)>,
    ) -> Result<(), KmodError> {
        if self.is_loaded(name) {
            return Ok(());
        }
        let order = match self.index.load_order(name) {
            Ok(order) => order,
            Err(e) => {
                warn(format!("cannot load module {name}: {e}"));
                self.note_failure(name, &e, failures);
                return Err(e);
            }
        };
        for rel in order {
            let module = module_name(&rel);
            if self.is_loaded(&module) {
                continue;
            }
            let path = self.moddir.join(&rel);
            match (self.insert)(&module, &path) {
                Ok(()) => {
                    debug(format!("loaded module {module}"));
                    self.failed.remove(&module);
                    self.loaded.insert(module.clone());
                    newly.push(module);
                }
                Err(e) if e.is_already_loaded() => {
                    self.loaded.insert(module);
                }
                Err(e) if e.is_not_applicable() && module != name => {
                    debug(format!("module {module} does not apply here: {e}"));
                }
                Err(e) => {
                    warn(format!("module {module} failed to load: {e}"));
                    self.note_failure(&module, &e, failures);
                    if module == name {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn note_failure(&mut self, module: &str, e: &KmodError, failures: &mut Vec<(String, String)>) {
        self.failed.insert(module.to_string(), e.to_string());
        if !failures.iter().any(|(m, _)| m == module) {
            failures.push((module.to_string(), e.to_string()));
        }
    }

    /// Loads a module for every device in `<sysfs>/devices` whose
    /// modalias matches one, then rescans (a bus driver exposes new
    /// devices) until no new modalias appears or nothing more was loaded,
    /// at most five passes. Failures are reported, not returned; modules
    /// that failed are not retried. Never panics or waits long.
    pub fn coldplug(&mut self, sysfs: &Path) -> ColdplugReport {
        let mut report = ColdplugReport::default();
        let mut seen: HashSet<String> = HashSet::new();
        for pass in 0..COLDPLUG_MAX_PASSES {
            if pass > 0 {
                std::thread::sleep(COLDPLUG_SETTLE);
            }
            let new: Vec<String> = scan_new(sysfs, &mut seen);
            if new.is_empty() {
                break;
            }
            report.passes += 1;
            self.refresh_loaded();
            let mut wanted: Vec<String> = Vec::new();
            for modalias in &new {
                for module in self.index.match_modalias(modalias) {
                    if !wanted.contains(&module) {
                        wanted.push(module);
                    }
                }
            }
            let before = report.loaded.len();
            for module in wanted {
                if self.is_loaded(&module) || self.failed.contains_key(&module) {
                    continue;
                }
                // Failures are logged and recorded by load_module.
                let _ = self.load_module(&module, &mut report.loaded, &mut report.failed);
            }
            if report.loaded.len() == before {
                break;
            }
        }
        report.modaliases = seen.len();
        info(format!(
            "coldplug: {} devices, {} modules loaded, {} failed, {} passes",
            report.modaliases,
            report.loaded.len(),
            report.failed.len(),
            report.passes
        ));
        report
    }
}

/// The modaliases under `sysfs` not in `seen` (which gains them).
fn scan_new(sysfs: &Path, seen: &mut HashSet<String>) -> Vec<String> {
    super::scan_modaliases(sysfs)
        .into_iter()
        .filter(|m| seen.insert(m.clone()))
        .collect()
}

/// Reads a whole file of at most `MAX_MODULE_SIZE` bytes.
fn read_module(path: &Path) -> Result<Vec<u8>, KmodError> {
    let read_err = |source| KmodError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut data = Vec::new();
    file.take(MAX_MODULE_SIZE as u64 + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() > MAX_MODULE_SIZE {
        return Err(KmodError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_MODULE_SIZE as u64,
        });
    }
    Ok(data)
}

/// Inserts one module file into the running kernel: `finit_module` for a
/// plain `.ko` (falling back to `init_module` where the kernel lacks it),
/// otherwise decompressed here and handed over with `init_module`.
fn insert_module(name: &str, path: &Path) -> Result<(), KmodError> {
    let insert_err = |errno| KmodError::Insert {
        module: name.to_string(),
        path: path.to_path_buf(),
        errno,
    };
    let plain = path.extension().is_some_and(|e| e == "ko");
    if plain {
        let file = File::open(path).map_err(|source| KmodError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(Errno::ENOSYS) => {}
            Err(errno) => return Err(insert_err(errno)),
        }
    }
    let data = read_module(path)?;
    let image = crate::decompress::decompress(&data, MAX_MODULE_SIZE).map_err(|source| {
        KmodError::Decompress {
            path: path.to_path_buf(),
            source,
        }
    })?;
    drop(data);
    init_module(&image, c"").map_err(insert_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::fs;
    use std::rc::Rc;

    const DEP: &str = "\
kernel/drivers/scsi/vmw_pvscsi.ko.zst: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/net/vmxnet3/vmxnet3.ko.xz:
kernel/drivers/misc/vmw_vmci/vmw_vmci.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/broken/broken.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/broken/needs_broken.ko: kernel/drivers/broken/broken.ko
kernel/fs/ext4/ext4.ko:
";
    const ALIAS: &str = "\
alias pci:v000015ADd000007C0sv*sd*bc*sc*i* vmw_pvscsi
alias pci:v000015ADd000007B0sv*sd*bc*sc*i* vmxnet3
alias pci:v000015ADd00000740sv*sd*bc*sc*i* vmw_vmci
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias pci:v00008086d00002922sv*sd*bc*sc*i* ahci
alias pci:v0000DEADd*sv*sd*bc*sc*i* broken
alias fs-ext4 ext4
";
    const BUILTIN: &str = "kernel/drivers/ata/ahci.ko\n";

    /// A loader whose insertions are recorded; `broken` always fails and
    /// `vmw_vmci` reports that it is already loaded.
    fn loader(already: &[&str]) -> (Loader, Rc<RefCell<Vec<String>>>) {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let record = Rc::clone(&calls);
        let index = ModuleIndex::parse(DEP, ALIAS, BUILTIN, "");
        let insert = move |name: &str, path: &Path| -> Result<(), KmodError> {
            record.borrow_mut().push(path.display().to_string());
            let errno = match name {
                "broken" => Errno::ENOEXEC,
                "vmw_vmci" => Errno::EEXIST,
                _ => return Ok(()),
            };
            Err(KmodError::Insert {
                module: name.to_string(),
                path: path.to_path_buf(),
                errno,
            })
        };
        let loaded = already.iter().map(|s| s.to_string()).collect();
        let loader = Loader::with_inserter(
            Path::new("/lib/modules/6.1.0"),
            index,
            loaded,
            Box::new(insert),
        );
        (loader, calls)
    }

    #[test]
    fn loads_dependencies_first_and_once() {
        let (mut l, calls) = loader(&[]);
        assert_eq!(l.load("vmw-pvscsi").unwrap(), ["scsi_common", "vmw_pvscsi"]);
        assert_eq!(
            *calls.borrow(),
            [
                "/lib/modules/6.1.0/kernel/drivers/scsi/scsi_common.ko",
                "/lib/modules/6.1.0/kernel/drivers/scsi/vmw_pvscsi.ko.zst",
            ]
        );
        assert!(l.load("vmw_pvscsi").unwrap().is_empty());
        assert_eq!(calls.borrow().len(), 2);
        assert!(l.is_loaded("vmw_pvscsi"));
    }

    #[test]
    fn skips_builtin_and_loaded_and_accepts_eexist() {
        let (mut l, calls) = loader(&["scsi_common"]);
        assert!(l.load("ahci").unwrap().is_empty());
        assert_eq!(l.load("vmw_pvscsi").unwrap(), ["vmw_pvscsi"]);
        assert!(l.load("vmw_vmci").unwrap().is_empty());
        assert!(l.is_loaded("vmw_vmci"));
        assert_eq!(l.load("fs-ext4").unwrap(), ["ext4"]);
        assert_eq!(calls.borrow().len(), 3);
    }

    #[test]
    fn failures() {
        let (mut l, _) = loader(&[]);
        assert!(matches!(
            l.load("nothing"),
            Err(KmodError::UnknownModule { .. })
        ));
        match l.load("broken") {
            Err(KmodError::Insert { module, errno, .. }) => {
                assert_eq!(module, "broken");
                assert_eq!(errno, Errno::ENOEXEC);
            }
            other => panic!("{other:?}"),
        }
        // scsi_common, loaded on the way, stays loaded.
        assert!(l.is_loaded("scsi_common"));
        // A failed dependency does not stop the module being tried.
        assert_eq!(l.load("needs_broken").unwrap(), ["needs_broken"]);
    }

    #[test]
    fn a_missing_index_leaves_an_empty_loader() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Loader::try_new(dir.path()),
            Err(KmodError::Read { .. })
        ));
        let mut l = Loader::new(dir.path());
        assert!(l.index().is_empty());
        assert!(matches!(
            l.load("vmw_pvscsi"),
            Err(KmodError::UnknownModule { .. })
        ));
        assert!(l.coldplug(dir.path()).loaded.is_empty());
    }

    #[test]
    fn coldplug_rescans_until_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = dir.path().to_path_buf();
        let device = |rel: &str, modalias: &str| {
            let d = sysfs.join("devices").join(rel);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("modalias"), format!("{modalias}\n")).unwrap();
        };
        device(
            "pci0000:00/0000:03:00.0",
            "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00",
        );
        device(
            "pci0000:00/0000:0b:00.0",
            "pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00",
        );
        device(
            "pci0000:00/0000:00:07.7",
            "pci:v000015ADd00000740sv000015ADsd00000740bc08sc80i00",
        );
        device(
            "pci0000:00/0000:00:1f.2",
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
        );
        device(
            "pci0000:00/0000:00:05.0",
            "pci:v0000DEADd00000001sv00000000sd00000000bc00sc00i00",
        );
        device(
            "pci0000:00/0000:00:04.0",
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        );
        device(
            "pci0000:00/0000:00:06.0",
            "pci:v00001234d00005678sv00000000sd00000000bc03sc00i00",
        );

        // Loading virtio_pci makes a virtio device appear, as the kernel would.
        let calls = Rc::new(RefCell::new(Vec::new()));
        let record = Rc::clone(&calls);
        let virtio_dev = sysfs.join("devices/pci0000:00/0000:00:04.0/virtio0");
        let insert = move |name: &str, path: &Path| -> Result<(), KmodError> {
            record.borrow_mut().push(name.to_string());
            if name == "virtio_pci" {
                fs::create_dir_all(&virtio_dev).unwrap();
                fs::write(virtio_dev.join("modalias"), "virtio:d00000002v00001AF4\n").unwrap();
            }
            if name == "broken" {
                return Err(KmodError::Insert {
                    module: name.into(),
                    path: path.into(),
                    errno: Errno::ENOEXEC,
                });
            }
            Ok(())
        };
        let index = ModuleIndex::parse(DEP, ALIAS, BUILTIN, "");
        let mut l = Loader::with_inserter(Path::new("/m"), index, HashSet::new(), Box::new(insert));
        let report = l.coldplug(&sysfs);
        let at = |m: &str| report.loaded.iter().position(|x| x == m);
        assert!(at("virtio") < at("virtio_pci"), "dependency first");
        assert!(
            at("virtio_pci") < at("virtio_blk"),
            "second pass after the first"
        );
        let mut loaded = report.loaded.clone();
        loaded.sort();
        assert_eq!(
            loaded,
            [
                "scsi_common",
                "virtio",
                "virtio_blk",
                "virtio_pci",
                "vmw_pvscsi",
                "vmw_vmci",
                "vmxnet3"
            ]
        );
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, "broken");
        assert!(report.failed[0].1.contains("ENOEXEC"));
        assert_eq!(report.modaliases, 8);
        assert_eq!(report.passes, 2);
        // virtio is shared: loaded once; broken is not retried.
        let calls = calls.borrow();
        assert_eq!(calls.iter().filter(|c| *c == "virtio").count(), 1);
        assert_eq!(calls.iter().filter(|c| *c == "broken").count(), 1);

        // A second coldplug finds nothing new to do.
        let again = l.coldplug(&sysfs);
        assert!(again.loaded.is_empty());
        assert!(again.failed.is_empty());
    }

    #[test]
    fn coldplug_of_an_empty_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, calls) = loader(&[]);
        let report = l.coldplug(dir.path());
        assert_eq!(report, ColdplugReport::default());
        assert!(calls.borrow().is_empty());
    }

    #[test]
    fn reads_modules_with_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ko");
        fs::write(&path, b"\x7fELF").unwrap();
        assert_eq!(read_module(&path).unwrap(), b"\x7fELF");
        assert!(matches!(
            read_module(&dir.path().join("missing.ko")),
            Err(KmodError::Read { .. })
        ));
    }
}
