//! The smoke-test initramfs: the stack's PID 1 as `/init`, the console and
//! null device nodes, and the kernel modules for 9p over virtio-pci and
//! for VMware's storage and network hardware, with index files that list
//! exactly those modules.

use std::fs;
use std::path::{Path, PathBuf};

use osam_image::cpio::Cpio;
use osam_image::kernel::{Closure, KernelTree, ModuleDb};
use osam_image::xz::compress_xz_crc32;

use crate::Arch;
use crate::error::{Error, Result};
use crate::paths;

/// What the smoke initramfs asks for: the 9p transport over virtio-pci, and
/// the VMware storage and network drivers. Their dependencies (virtio_ring,
/// netfs, scsi_mod, libata, …) come from the modules' own `depends=`, not
/// from this list.
pub const SMOKE_MODULES: &[&str] = &[
    "virtio_pci",
    "9p",
    "9pnet_virtio",
    "vmw_pvscsi",
    "sd_mod",
    "ahci",
    "vmxnet3",
    "e1000",
];

/// The environment variable naming a different `/init` for one stack (for
/// debugging the harness): `OSAM_TEST_INIT_X86_64`, `OSAM_TEST_INIT_I686`.
pub fn init_override_var(arch: Arch) -> String {
    format!("OSAM_TEST_INIT_{}", arch.name().to_ascii_uppercase())
}

/// A kernel and initramfs to boot.
#[derive(Debug, Clone)]
pub struct SmokeBoot {
    /// The stack.
    pub arch: Arch,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The xz (CRC32) compressed cpio.
    pub initrd: PathBuf,
    /// The kernel release.
    pub release: String,
    /// The binary used as `/init`.
    pub init: PathBuf,
    /// The modules included, in load order.
    pub modules: Vec<String>,
    /// Requested modules that are built into the kernel.
    pub builtin: Vec<String>,
}

/// Builds the smoke initramfs of `arch` into `out_dir`: fetches the pinned
/// kernel, builds `osam-init` (or takes the binary named by
/// [`init_override_var`]) and writes `out_dir/initrd-<arch>.cpio.xz`.
pub fn build(arch: Arch, out_dir: &Path) -> Result<SmokeBoot> {
    let tree = paths::kernel_tree(arch)?;
    let init = match std::env::var_os(init_override_var(arch)) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => paths::stack_binary(arch, "osam-init")?,
    };
    let init_bytes = fs::read(&init).map_err(Error::io("reading", &init))?;
    let db = tree.modules()?;
    let (cpio, closure) = initramfs(&init_bytes, &tree, &db, SMOKE_MODULES)?;
    let compressed = compress_xz_crc32(&cpio.to_bytes()?, 6)?;
    fs::create_dir_all(out_dir).map_err(Error::io("creating", out_dir))?;
    let initrd = out_dir.join(format!("initrd-{arch}.cpio.xz"));
    fs::write(&initrd, compressed).map_err(Error::io("writing", &initrd))?;
    Ok(SmokeBoot {
        arch,
        kernel: tree.vmlinuz.clone(),
        initrd,
        release: tree.release.clone(),
        init,
        modules: closure.modules,
        builtin: closure.builtin,
    })
}

/// The initramfs contents: `/init`, `/dev/console` (5:1), `/dev/null`
/// (1:3), the usual mount points, and `lib/modules/<release>/` with the
/// closure of `wanted` and its modules.dep, modules.alias,
/// modules.softdep and modules.builtin. A wanted module the kernel has
/// neither as a module nor built in is an error.
pub fn initramfs(
    init: &[u8],
    tree: &KernelTree,
    db: &ModuleDb,
    wanted: &[&str],
) -> Result<(Cpio, Closure)> {
    let closure = db.closure(wanted.iter().copied());
    if !closure.missing.is_empty() {
        return Err(Error::Missing(format!(
            "kernel {} has neither module nor built-in {}",
            tree.release,
            closure.missing.join(", ")
        )));
    }
    let mut cpio = Cpio::new();
    cpio.add_file("init", 0o755, init)?;
    cpio.add_dir("dev", 0o755)?;
    cpio.add_char_dev("dev/console", 0o600, 5, 1)?;
    cpio.add_char_dev("dev/null", 0o666, 1, 3)?;
    for dir in ["proc", "sys", "run", "sysroot"] {
        cpio.add_dir(dir, 0o755)?;
    }
    cpio.add_dir("tmp", 0o1777)?;

    let base = format!("lib/modules/{}", tree.release);
    let subset = db.subset(closure.modules.iter().map(String::as_str));
    for module in subset.modules() {
        let src = tree.modules_dir.join(&module.path);
        let bytes = fs::read(&src).map_err(Error::io("reading", &src))?;
        cpio.add_file(&format!("{base}/{}", module.path), 0o644, bytes)?;
    }
    for (name, text) in subset.index_files() {
        cpio.add_file(&format!("{base}/{name}"), 0o644, text)?;
    }
    Ok((cpio, closure))
}
