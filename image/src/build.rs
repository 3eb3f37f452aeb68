//! `osam-image build`: one stack (x86_64 or i686) from pinned inputs to a
//! bootable disk, in a work folder, renamed into the output folder at the
//! end. Two builds from the same inputs and `SOURCE_DATE_EPOCH` are
//! byte-identical: every identifier is derived from a seed computed from
//! the inputs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::cpio::Cpio;
use crate::deb::Deb;
use crate::disk::{self, DiskIds, DiskSpec};
use crate::kernel::KernelTree;
use crate::kernel_config;
use crate::pins::{self, Pin};
use crate::stack::manifest::{BuildInputs, KernelInfo, Manifest};
use crate::stack::{InputSet, StackArch, stack_contents};
use crate::xz::compress_xz_crc32;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// streamOptimized VMDK plus an OVA around it (for vSphere).
    Vmdk,
    /// monolithicSparse VMDK (hosted products, QEMU).
    VmdkSparse,
    /// The raw disk.
    Raw,
    /// qcow2 (QEMU).
    Qcow2,
}

/// What a build needs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub arch: StackArch,
    pub formats: Vec<Format>,
    pub out: PathBuf,
    /// The folder `scripts/fetch-inputs.sh` filled (the pinned .debs).
    pub inputs: PathBuf,
    pub pins_file: PathBuf,
    /// `kernel-config/`: required.config and modules.list.
    pub kernel_config: PathBuf,
    pub init: PathBuf,
    pub fixupctl: PathBuf,
    pub stage2: Option<PathBuf>,
    pub epoch: u64,
    pub size_mib: u64,
    /// Kept after the build when set (for debugging); else a temp folder.
    pub work: Option<PathBuf>,
}

/// What a build made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub name: String,
    pub outputs: Vec<PathBuf>,
    pub disk_guid: String,
    pub initrd_bytes: u64,
    pub kernel_release: String,
}

/// The base name of a stack's files.
pub fn image_name(arch: StackArch) -> String {
    format!("osam-fixup-{}", arch.name())
}

fn step(bar: &indicatif::ProgressBar, msg: &str) {
    bar.set_message(msg.to_string());
    bar.inc(1);
}

fn pin_for<'a>(pins: &'a [Pin], arch: &str, prefix: &str) -> Result<&'a Pin> {
    pins.iter()
        .find(|p| (p.arch == arch || p.arch == "all") && p.package.starts_with(prefix))
        .with_context(|| format!("no {prefix}* pin for {arch} in the pins file"))
}

fn deb_path(inputs: &Path, pin: &Pin) -> Result<PathBuf> {
    let p = inputs.join(pin.deb_file_name());
    if !p.is_file() {
        bail!(
            "{} is not in {}: run scripts/fetch-inputs.sh (make inputs)",
            pin.deb_file_name(),
            inputs.display()
        );
    }
    Ok(p)
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds one stack.
pub fn build(opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let name = image_name(opts.arch);
    let tmp;
    let work: PathBuf = match &opts.work {
        Some(w) => {
            fs::create_dir_all(w).with_context(|| format!("creating {}", w.display()))?;
            w.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix(&format!("osam-image-{}-", opts.arch.name()))
                .tempdir()
                .context("creating a work folder")?;
            tmp.path().to_path_buf()
        }
    };
    let bar = indicatif::ProgressBar::new(9);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{pos}/{len}] {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(name.clone());

    let pins_text = fs::read_to_string(&opts.pins_file)
        .with_context(|| format!("reading {}", opts.pins_file.display()))?;
    let pin_list = pins::parse(&pins_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", opts.pins_file.display()))?;
    let debian_arch = opts.arch.debian_arch();

    // 1. The kernel, checked against kernel-config/.
    step(&bar, "extracting the kernel");
    let kpin = pin_for(&pin_list, debian_arch, "linux-image-")?;
    let kdeb = Deb::open(deb_path(&opts.inputs, kpin)?)?;
    let (tree, _) = KernelTree::extract_deb(&kdeb, work.join("kernel"))
        .context("extracting the kernel package")?;
    let config_path = tree
        .config
        .clone()
        .with_context(|| format!("the kernel package {} has no config", kpin.package))?;
    let fragment_path = opts.kernel_config.join("required.config");
    let config_text = fs::read_to_string(&config_path)?;
    let fragment = fs::read_to_string(&fragment_path)
        .with_context(|| format!("reading {}", fragment_path.display()))?;
    if let Err(missing) = kernel_config::check(&config_text, &fragment) {
        let list: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
        bail!(
            "the kernel {} lacks options the stack needs ({}): {}",
            tree.release,
            fragment_path.display(),
            list.join(", ")
        );
    }

    // 2. Its modules: what kernel-config/modules.list names, with their
    //    modules.dep closure.
    step(&bar, "selecting kernel modules");
    let list_path = opts.kernel_config.join("modules.list");
    let wanted = kernel_config::parse_module_list(
        &fs::read_to_string(&list_path)
            .with_context(|| format!("reading {}", list_path.display()))?,
    );
    let db = tree.modules()?;
    let closure = db.closure(wanted.iter().map(String::as_str));
    let missing: Vec<&String> = closure
        .missing
        .iter()
        .filter(|m| wanted.contains(m))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the kernel {} has neither module nor built-in for {:?} ({})",
            tree.release,
            missing,
            list_path.display()
        );
    }

    // 3. The tools and their library closure.
    step(&bar, "extracting the tools");
    let inputs = InputSet::extract(opts.arch, &opts.inputs, &pins_text, &work.join("packages"))
        .context("extracting the tool packages")?;
    let contents = stack_contents(
        opts.arch,
        &inputs,
        &opts.init,
        &opts.fixupctl,
        opts.stage2.as_deref(),
    )
    .context("assembling the stack's files")?;

    // 4. The initramfs.
    step(&bar, "writing the initramfs (xz)");
    let mut cpio = Cpio::with_epoch(opts.epoch);
    contents.add_to_cpio(&mut cpio)?;
    let base = format!("lib/modules/{}", tree.release);
    let subset = db.subset(closure.modules.iter().map(String::as_str));
    let mut module_files = Vec::new();
    for module in subset.modules() {
        let src = tree.modules_dir.join(&module.path);
        let bytes = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        module_files.push((
            format!("{base}/{}", module.path),
            sha256_hex(&bytes),
            bytes.len(),
        ));
        cpio.add_file(&format!("{base}/{}", module.path), 0o644, bytes)?;
    }
    for (file, text) in subset.index_files() {
        cpio.add_file(&format!("{base}/{file}"), 0o644, text)?;
    }
    let initrd = compress_xz_crc32(&cpio.to_bytes()?, 9)?;
    let vmlinuz = fs::read(&tree.vmlinuz)?;

    // 5. The manifest.
    step(&bar, "writing the manifest");
    let mut manifest = Manifest::new(
        &contents,
        KernelInfo {
            package: kpin.package.clone(),
            release: tree.release.clone(),
            version: kpin.version.clone(),
        },
        BuildInputs {
            osam_init_version: env!("CARGO_PKG_VERSION").to_string(),
            pins_sha256: sha256_hex(pins_text.as_bytes()),
            source_date_epoch: opts.epoch,
        },
    );
    for (path, sha, size) in &module_files {
        manifest.files.push(crate::stack::manifest::ManifestFile {
            from: kpin.package.clone(),
            mode: "0644".into(),
            path: path.clone(),
            sha256: Some(sha.clone()),
            size: Some(*size as u64),
            target: None,
        });
    }
    manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest_json = manifest.to_json();

    // 6. GRUB, made for this disk's ESP.
    step(&bar, "making the GRUB images");
    let mut seed_hash = Sha256::new();
    seed_hash.update(opts.arch.name().as_bytes());
    seed_hash.update(Sha256::digest(&vmlinuz));
    seed_hash.update(Sha256::digest(&initrd));
    seed_hash.update(opts.epoch.to_le_bytes());
    let seed: [u8; 32] = seed_hash.finalize().into();
    let grub_root = work.join("grub");
    for prefix in ["grub-pc-bin", "grub-efi-amd64-bin", "grub-efi-ia32-bin"] {
        let pin = pin_for(&pin_list, "amd64", prefix)?;
        Deb::open(deb_path(&opts.inputs, pin)?)?
            .extract_to(&grub_root, |p| {
                p.starts_with("usr/lib/grub") || p.starts_with("./usr/lib/grub")
            })
            .with_context(|| format!("extracting {}", pin.package))?;
    }
    let esp_uuid = DiskIds::from_seed(&seed).esp_fs_uuid();
    let grub = disk::make_grub_images(&grub_root, &work.join("grub-work"), &esp_uuid)?;

    // 7. The disk.
    step(&bar, "writing the disk");
    let mut spec = DiskSpec::new(opts.size_mib << 20, seed, grub);
    spec.epoch = opts.epoch;
    spec.files = vec![
        (disk::KERNEL_PATH.to_string(), vmlinuz),
        (disk::INITRD_PATH.to_string(), initrd.clone()),
        (
            "osam/manifest.json".to_string(),
            manifest_json.as_bytes().to_vec(),
        ),
    ];
    let raw = work.join(format!("{name}.raw"));
    let info = disk::build_raw(&spec, &raw)?;

    // 8. The formats.
    step(&bar, "writing the formats");
    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let mut outputs = Vec::new();
    let vmdk_opts = crate::vmdk::VmdkOptions {
        seed: seed.to_vec(),
        ..Default::default()
    };
    for f in &opts.formats {
        let mut src = fs::File::open(&raw)?;
        match f {
            Format::Vmdk => {
                let p = opts.out.join(format!("{name}.vmdk"));
                crate::vmdk::write_stream_optimized(&mut src, &p, &vmdk_opts)?;
                let ova = opts.out.join(format!("{name}.ova"));
                let mut o = crate::ova::OvaOptions::new(&name);
                o.mtime = opts.epoch;
                crate::ova::write(&p, &ova, &o)?;
                outputs.push(p);
                outputs.push(ova);
            }
            Format::VmdkSparse => {
                let p = opts.out.join(format!("{name}-sparse.vmdk"));
                crate::vmdk::write_monolithic_sparse(&mut src, &p, &vmdk_opts)?;
                outputs.push(p);
            }
            Format::Qcow2 => {
                let p = opts.out.join(format!("{name}.qcow2"));
                crate::qcow2::write(&mut src, &p)?;
                outputs.push(p);
            }
            Format::Raw => {
                let p = opts.out.join(format!("{name}.raw"));
                let tmp = opts.out.join(format!(".{name}.raw.tmp"));
                fs::copy(&raw, &tmp)?;
                fs::rename(&tmp, &p)?;
                outputs.push(p);
            }
        }
    }

    // 9. The manifest beside the images, last.
    step(&bar, "done");
    let manifest_out = opts.out.join(format!("{name}.manifest.json"));
    let mut full: serde_json::Value = serde_json::from_str(&manifest_json)?;
    full["disk"] = serde_json::json!({
        "guid": info.disk_guid,
        "espVolumeId": esp_uuid,
        "sizeBytes": opts.size_mib << 20,
        "initrdSha256": sha256_hex(&initrd),
    });
    let tmp = opts.out.join(format!(".{name}.manifest.json.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(&full)?)?;
    fs::rename(&tmp, &manifest_out)?;
    outputs.push(manifest_out);
    bar.finish_and_clear();
    eprintln!(
        "{name}: kernel {}, initramfs {:.1} MiB, {} in {:.1} s",
        tree.release,
        initrd.len() as f64 / 1048576.0,
        outputs
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(BuildReport {
        name,
        outputs,
        disk_guid: info.disk_guid.clone(),
        initrd_bytes: initrd.len() as u64,
        kernel_release: tree.release.clone(),
    })
}
