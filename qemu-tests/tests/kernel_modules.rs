//! The pinned stack kernels' modules as the builder reads them (no QEMU):
//! the smoke initramfs carries the module closure with index files that
//! name only what it carries, and the builder's modules.dep agrees with
//! `depmod`'s where kmod is installed.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use osam_image::cpio::{self, S_IFCHR};
use osam_image::kernel::{KernelTree, ModuleDb};
use osam_qemu::smoke::{self, SMOKE_MODULES};
use osam_qemu::{Arch, paths};

/// modules.dep as `module path -> set of dependency paths`.
fn dep_sets(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .filter(|(m, _)| m.contains(".ko"))
        .map(|(m, deps)| {
            (
                m.to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect()
}

fn check_initramfs(tree: &KernelTree, db: &ModuleDb) -> Result<()> {
    let init = b"\x7fELF not really";
    let (archive, closure) = smoke::initramfs(init, tree, db, SMOKE_MODULES)?;
    ensure!(closure.missing.is_empty(), "missing: {:?}", closure.missing);
    for wanted in SMOKE_MODULES {
        let name = wanted.replace('-', "_");
        ensure!(
            closure.modules.contains(&name) || closure.builtin.iter().any(|b| b == wanted),
            "{wanted} is neither included nor built in"
        );
    }
    let bytes = archive.to_bytes()?;
    let entries = cpio::read_entries(&bytes)?;
    let by_name: BTreeMap<&str, &cpio::Entry<'_>> = entries.iter().map(|e| (e.name, e)).collect();
    ensure!(by_name["init"].data == init && by_name["init"].mode & 0o111 != 0);
    let console = by_name["dev/console"];
    ensure!(
        console.mode & 0o170000 == S_IFCHR && (console.rdev_major, console.rdev_minor) == (5, 1)
    );
    let null = by_name["dev/null"];
    ensure!((null.rdev_major, null.rdev_minor) == (1, 3));

    let base = format!("lib/modules/{}", tree.release);
    let file = |name: &str| -> Result<String> {
        let e = by_name
            .get(format!("{base}/{name}").as_str())
            .with_context(|| format!("no {base}/{name}"))?;
        Ok(String::from_utf8(e.data.to_vec())?)
    };
    let deps = dep_sets(&file("modules.dep")?);
    ensure!(
        deps.len() == closure.modules.len(),
        "modules.dep lists {} modules",
        deps.len()
    );
    for (module, needs) in &deps {
        for path in std::iter::once(module).chain(needs) {
            ensure!(
                by_name.contains_key(format!("{base}/{path}").as_str()),
                "modules.dep names {path}, which is not in the initramfs"
            );
        }
    }
    let alias = file("modules.alias")?;
    ensure!(
        alias.contains(" 9p\n") && alias.contains("alias fs-9p 9p"),
        "no fs-9p alias"
    );
    ensure!(
        alias.contains("virtio:d00000009v"),
        "no 9pnet_virtio device alias"
    );
    ensure!(
        alias.contains("pci:v000015ADd000007C0"),
        "no vmw_pvscsi device alias"
    );
    for line in alias.lines().filter(|l| !l.starts_with('#')) {
        let module = line.rsplit(' ').next().unwrap_or_default();
        ensure!(
            closure.modules.iter().any(|m| m == module),
            "alias of a module not included: {line}"
        );
    }
    ensure!(!file("modules.builtin")?.is_empty());
    file("modules.softdep")?;
    Ok(())
}

/// PID 1 reads the index files the way `osam_init::kmod` does: for every
/// module asked for, its load order there holds what the builder included.
fn check_pid1_index(tree: &KernelTree, db: &ModuleDb) -> Result<()> {
    let closure = db.closure(SMOKE_MODULES.iter().copied());
    let sub = db.subset(closure.modules.iter().map(String::as_str));
    let index = osam_init::kmod::ModuleIndex::parse(
        &sub.modules_dep(),
        &sub.modules_alias(),
        &sub.modules_builtin(),
        &sub.modules_softdep(),
    );
    ensure!(
        index.len() == sub.len(),
        "PID 1 sees {} modules, the builder wrote {}",
        index.len(),
        sub.len()
    );
    for name in SMOKE_MODULES {
        let order = index
            .load_order(name)
            .with_context(|| format!("{}: PID 1's load order of {name}", tree.release))?;
        let mut theirs: BTreeSet<String> = order.into_iter().collect();
        let ours: BTreeSet<String> = sub
            .closure([*name])
            .modules
            .iter()
            .filter_map(|m| sub.get(m).map(|m| m.path.clone()))
            .collect();
        for path in &theirs {
            ensure!(
                tree.modules_dir.join(path).is_file(),
                "PID 1 would load {path}, which is not there"
            );
        }
        theirs.retain(|p| !ours.contains(p));
        ensure!(
            theirs.is_empty(),
            "{name}: PID 1 would load more than the closure: {theirs:?}"
        );
    }
    Ok(())
}

fn check_against_depmod(tree: &KernelTree, db: &ModuleDb) -> Result<()> {
    let Ok(out) = Command::new("depmod")
        .args(["-n", "-b"])
        .arg(&tree.root)
        .arg(&tree.release)
        .output()
    else {
        eprintln!("depmod is not installed (apt-get install kmod): skipping the comparison");
        return Ok(());
    };
    ensure!(
        out.status.success(),
        "depmod -n failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = dep_sets(&String::from_utf8_lossy(&out.stdout));
    let ours = dep_sets(&db.modules_dep());
    ensure!(
        theirs.len() == ours.len(),
        "depmod: {} modules, ours: {}",
        theirs.len(),
        ours.len()
    );
    let differ: Vec<&String> = ours
        .iter()
        .filter(|(m, d)| theirs.get(*m) != Some(d))
        .map(|(m, _)| m)
        .take(5)
        .collect();
    ensure!(
        differ.is_empty(),
        "modules.dep differs from depmod's for {differ:?}"
    );
    Ok(())
}

#[test]
fn stack_kernel_modules() -> Result<()> {
    for arch in Arch::ALL {
        let tree =
            paths::kernel_tree(arch).with_context(|| format!("getting the {arch} kernel"))?;
        let db = tree
            .modules()
            .with_context(|| format!("reading the {arch} modules"))?;
        ensure!(db.len() > 1000, "{arch}: only {} modules", db.len());
        check_initramfs(&tree, &db)
            .with_context(|| format!("checking the {arch} smoke initramfs"))?;
        check_pid1_index(&tree, &db)
            .with_context(|| format!("reading the {arch} index as PID 1 does"))?;
        check_against_depmod(&tree, &db)
            .with_context(|| format!("comparing {arch} with depmod"))?;
    }
    Ok(())
}
