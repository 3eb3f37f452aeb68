//! The kernel's modules: a database read from the modules themselves (what
//! `depmod` does), dependency closures, and the index files
//! (modules.dep, modules.alias, modules.softdep, modules.builtin) for any
//! subset of the modules.
//!
//! Debian's linux-image packages ship no modules.dep: `depmod` makes it at
//! install time. The builder therefore reads `depends=`, `alias=` and
//! `softdep=` from each module's .modinfo and writes the index files itself,
//! for exactly the modules it puts into an initramfs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::KernelError;
use super::glob;
use super::modinfo::{self, ModInfo, normalize_name};
use crate::compression::Compression;

/// One loadable module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name (`-` normalized to `_`).
    pub name: String,
    /// Its path relative to `lib/modules/<release>/`, e.g.
    /// `kernel/fs/9p/9p.ko`.
    pub path: String,
    /// What its .modinfo says.
    pub info: ModInfo,
}

/// What a module name or alias stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Loadable modules (one for a name; any number for an alias).
    Modules(Vec<String>),
    /// Built into the kernel.
    Builtin,
    /// Nothing this kernel has.
    Missing,
}

/// The modules needed for a set of names, in load order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    /// Modules to load, each after everything it depends on (hard
    /// dependencies and `softdep pre:`), `softdep post:` after.
    pub modules: Vec<String>,
    /// Names asked for (or depended on) that are built into the kernel.
    pub builtin: Vec<String>,
    /// Names asked for (or depended on) that this kernel does not have.
    pub missing: Vec<String>,
}

/// The modules of one kernel release.
#[derive(Debug, Clone, Default)]
pub struct ModuleDb {
    modules: BTreeMap<String, Module>,
    /// modules.builtin as it was (paths, one a line).
    builtin_lines: Vec<String>,
    builtin: BTreeSet<String>,
}

/// `kernel/drivers/x/foo-bar.ko.xz` → `foo_bar`.
fn name_from_path(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize_name(stem)
}

fn is_module_file(name: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| name.ends_with(s))
}

impl ModuleDb {
    /// Reads every module below `modules_dir` (`lib/modules/<release>`),
    /// uncompressed or `.ko.{xz,zst,gz}`, and its modules.builtin. Symbolic
    /// links (`build`, `source`) are not followed. Where two files carry the
    /// same module name, the first in path order wins.
    pub fn scan(modules_dir: &Path) -> Result<Self, KernelError> {
        let mut files = Vec::new();
        walk(modules_dir, modules_dir, &mut files)?;
        files.sort();
        let mut modules = Vec::with_capacity(files.len());
        for rel in files {
            let full = modules_dir.join(&rel);
            let raw = fs::read(&full).map_err(|source| KernelError::Read {
                path: full.clone(),
                source,
            })?;
            let bytes = Compression::decode_sniffed(&raw).map_err(|source| KernelError::Read {
                path: full.clone(),
                source,
            })?;
            let info = modinfo::parse_module(&bytes)
                .map_err(|reason| KernelError::Module { path: full, reason })?;
            let name = info.name.clone().unwrap_or_else(|| name_from_path(&rel));
            modules.push(Module {
                name,
                path: rel,
                info,
            });
        }
        let builtin_path = modules_dir.join("modules.builtin");
        let builtin = match fs::read_to_string(&builtin_path) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(KernelError::Read {
                    path: builtin_path,
                    source,
                });
            }
        };
        Ok(Self::from_modules(modules, builtin))
    }

    /// A database of the given modules and modules.builtin lines (names
    /// and dependencies normalized: `-` → `_`).
    pub fn from_modules(
        modules: impl IntoIterator<Item = Module>,
        builtin_lines: Vec<String>,
    ) -> Self {
        let mut map = BTreeMap::new();
        for mut m in modules {
            m.name = normalize_name(&m.name);
            for dep in &mut m.info.depends {
                *dep = normalize_name(dep);
            }
            map.entry(m.name.clone()).or_insert(m);
        }
        let builtin = builtin_lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| name_from_path(l.trim()))
            .collect();
        Self {
            modules: map,
            builtin_lines,
            builtin,
        }
    }

    /// A module by name (`-` and `_` alike).
    pub fn get(&self, name: &str) -> Option<&Module> {
        self.modules.get(&normalize_name(name))
    }

    /// Every loadable module, by name.
    pub fn modules(&self) -> impl Iterator<Item = &Module> {
        self.modules.values()
    }

    /// The number of loadable modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether there are no loadable modules.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Whether `name` is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize_name(name))
    }

    /// What a module name or alias (for instance a softdep's `crc32c`, or
    /// `fs-9p`) stands for: the module of that name, else built in, else
    /// every module with a matching alias pattern.
    pub fn resolve(&self, name_or_alias: &str) -> Resolved {
        let name = normalize_name(name_or_alias);
        if self.modules.contains_key(&name) {
            return Resolved::Modules(vec![name]);
        }
        if self.builtin.contains(&name) {
            return Resolved::Builtin;
        }
        let found: Vec<String> = self
            .modules
            .values()
            .filter(|m| {
                m.info
                    .aliases
                    .iter()
                    .any(|p| glob::matches(p, name_or_alias))
            })
            .map(|m| m.name.clone())
            .collect();
        if found.is_empty() {
            Resolved::Missing
        } else {
            Resolved::Modules(found)
        }
    }

    /// Everything needed to use `names` (module names or aliases): their
    /// modules.dep closure plus soft dependencies, in load order.
    pub fn closure<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Closure {
        let mut walk = ClosureWalk {
            db: self,
            out: Closure::default(),
            done: BTreeSet::new(),
            visiting: BTreeSet::new(),
        };
        for name in names {
            walk.request(name);
        }
        walk.out
    }

    /// The hard dependencies of `name`, transitively, each after what it
    /// depends on, `name` itself last; empty for an unknown module.
    pub fn load_order(&self, name: &str) -> Vec<String> {
        fn visit(db: &ModuleDb, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
            if !seen.insert(name.to_owned()) {
                return;
            }
            let Some(m) = db.modules.get(name) else {
                return;
            };
            for dep in &m.info.depends {
                visit(db, dep, seen, out);
            }
            out.push(name.to_owned());
        }
        let mut out = Vec::new();
        if self.get(name).is_some() {
            visit(self, &normalize_name(name), &mut BTreeSet::new(), &mut out);
        }
        out
    }

    /// A database of only the named modules (builtins kept as they are).
    /// Dependencies outside the subset disappear from its index files, so
    /// pass a [`ModuleDb::closure`].
    pub fn subset<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> ModuleDb {
        let keep: BTreeSet<String> = names.into_iter().map(normalize_name).collect();
        Self {
            modules: self
                .modules
                .iter()
                .filter(|(n, _)| keep.contains(*n))
                .map(|(n, m)| (n.clone(), m.clone()))
                .collect(),
            builtin_lines: self.builtin_lines.clone(),
            builtin: self.builtin.clone(),
        }
    }

    /// modules.dep: `path: dep-path …` for every module, dependencies in
    /// depmod's order (a loader loads them from the last to the first).
    pub fn modules_dep(&self) -> String {
        let mut lines: Vec<(String, String)> = self
            .modules
            .values()
            .map(|m| {
                let mut order = self.load_order(&m.name);
                order.pop(); // the module itself
                let deps: Vec<&str> = order
                    .iter()
                    .rev()
                    .filter_map(|d| self.modules.get(d))
                    .map(|d| d.path.as_str())
                    .collect();
                let line = if deps.is_empty() {
                    format!("{}:\n", m.path)
                } else {
                    format!("{}: {}\n", m.path, deps.join(" "))
                };
                (m.path.clone(), line)
            })
            .collect();
        lines.sort();
        lines.into_iter().map(|(_, l)| l).collect()
    }

    /// modules.alias: `alias <pattern> <module>` for every module's aliases.
    pub fn modules_alias(&self) -> String {
        let mut out = String::from("# Aliases extracted from modules themselves.\n");
        for m in self.modules.values() {
            for a in &m.info.aliases {
                out.push_str(&format!("alias {a} {}\n", m.name));
            }
        }
        out
    }

    /// modules.softdep: `softdep <module> pre: … post: …`, keeping only the
    /// names that still resolve within this database (or are built in).
    pub fn modules_softdep(&self) -> String {
        let mut out = String::from("# Soft dependencies extracted from modules themselves.\n");
        let known = |n: &&String| !matches!(self.resolve(n), Resolved::Missing);
        for m in self.modules.values() {
            let pre: Vec<&String> = m.info.softdep_pre.iter().filter(known).collect();
            let post: Vec<&String> = m.info.softdep_post.iter().filter(known).collect();
            if pre.is_empty() && post.is_empty() {
                continue;
            }
            out.push_str(&format!("softdep {}", m.name));
            for (label, list) in [("pre:", pre), ("post:", post)] {
                if !list.is_empty() {
                    out.push(' ');
                    out.push_str(label);
                    for n in list {
                        out.push(' ');
                        out.push_str(n);
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// modules.builtin as the kernel package had it.
    pub fn modules_builtin(&self) -> String {
        let mut out = self.builtin_lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// The four index files by name, for writing next to the modules.
    pub fn index_files(&self) -> [(&'static str, String); 4] {
        [
            ("modules.dep", self.modules_dep()),
            ("modules.alias", self.modules_alias()),
            ("modules.softdep", self.modules_softdep()),
            ("modules.builtin", self.modules_builtin()),
        ]
    }
}

struct ClosureWalk<'a> {
    db: &'a ModuleDb,
    out: Closure,
    done: BTreeSet<String>,
    visiting: BTreeSet<String>,
}

impl ClosureWalk<'_> {
    fn note(list: &mut Vec<String>, name: &str) {
        if !list.iter().any(|n| n == name) {
            list.push(name.to_owned());
        }
    }

    fn request(&mut self, name: &str) {
        match self.db.resolve(name) {
            Resolved::Modules(found) => {
                for m in found {
                    self.visit(&m);
                }
            }
            Resolved::Builtin => Self::note(&mut self.out.builtin, name),
            Resolved::Missing => Self::note(&mut self.out.missing, name),
        }
    }

    fn visit(&mut self, name: &str) {
        if self.done.contains(name) || !self.visiting.insert(name.to_owned()) {
            return; // done, or a cycle (which the kernel would refuse anyway)
        }
        let Some(m) = self.db.modules.get(name) else {
            return;
        };
        for pre in &m.info.softdep_pre {
            self.request(pre);
        }
        for dep in &m.info.depends {
            self.request(dep);
        }
        self.visiting.remove(name);
        self.done.insert(name.to_owned());
        self.out.modules.push(name.to_owned());
        for post in &m.info.softdep_post {
            self.request(post);
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), KernelError> {
    let read_err = |path: &Path, source| KernelError::Read {
        path: path.to_path_buf(),
        source,
    };
    let entries = fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        let kind = entry.file_type().map_err(|e| read_err(&entry.path(), e))?;
        let path: PathBuf = entry.path();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() && is_module_file(&entry.file_name().to_string_lossy()) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(
        path: &str,
        depends: &[&str],
        aliases: &[&str],
        pre: &[&str],
        post: &[&str],
    ) -> Module {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Module {
            name: name_from_path(path),
            path: path.to_owned(),
            info: ModInfo {
                name: Some(name_from_path(path)),
                depends: strings(depends),
                aliases: strings(aliases),
                softdep_pre: strings(pre),
                softdep_post: strings(post),
                firmware: Vec::new(),
            },
        }
    }

    /// The 9p and sd_mod chains of Debian's 6.1 kernel, in miniature.
    fn db() -> ModuleDb {
        ModuleDb::from_modules(
            [
                module("kernel/drivers/virtio/virtio.ko", &[], &[], &[], &[]),
                module("kernel/drivers/virtio/virtio_ring.ko", &[], &[], &[], &[]),
                module(
                    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
                    &[],
                    &[],
                    &[],
                    &[],
                ),
                module(
                    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
                    &[],
                    &[],
                    &[],
                    &[],
                ),
                module(
                    "kernel/drivers/virtio/virtio_pci.ko",
                    &[
                        "virtio_ring",
                        "virtio_pci_modern_dev",
                        "virtio_pci_legacy_dev",
                        "virtio",
                    ],
                    &["pci:v00001AF4d*sv*sd*bc*sc*i*"],
                    &[],
                    &[],
                ),
                module("kernel/fs/netfs/netfs.ko", &[], &[], &[], &[]),
                module("kernel/fs/fscache/fscache.ko", &["netfs"], &[], &[], &[]),
                module("kernel/net/9p/9pnet.ko", &[], &["net-pf-37"], &[], &[]),
                module(
                    "kernel/net/9p/9pnet_virtio.ko",
                    &["virtio", "9pnet", "virtio_ring"],
                    &["virtio:d00000009v*"],
                    &[],
                    &[],
                ),
                module(
                    "kernel/fs/9p/9p.ko",
                    &["9pnet", "fscache", "netfs"],
                    &["fs-9p"],
                    &[],
                    &[],
                ),
                module("kernel/drivers/scsi/scsi_mod.ko", &[], &[], &[], &[]),
                module("kernel/lib/crc-t10dif.ko", &[], &[], &["crct10dif"], &[]),
                module(
                    "kernel/crypto/crct10dif_generic.ko",
                    &[],
                    &["crct10dif", "crypto-crct10dif"],
                    &[],
                    &[],
                ),
                module("kernel/block/t10-pi.ko", &["crc_t10dif"], &[], &[], &[]),
                module(
                    "kernel/drivers/scsi/sd_mod.ko",
                    &["scsi_mod", "t10-pi"],
                    &[],
                    &[],
                    &["nothere"],
                ),
            ],
            vec![
                "kernel/drivers/ata/libata.ko".into(),
                "kernel/fs/ext4/ext4.ko".into(),
            ],
        )
    }

    fn position(list: &[String], name: &str) -> usize {
        list.iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} not in {list:?}"))
    }

    #[test]
    fn closure_in_load_order() {
        let db = db();
        let c = db.closure([
            "9p",
            "9pnet_virtio",
            "virtio_pci",
            "sd_mod",
            "ext4",
            "vmxnet3",
        ]);
        assert_eq!(c.builtin, ["ext4"]);
        assert_eq!(c.missing, ["nothere", "vmxnet3"]);
        assert_eq!(c.modules.len(), 15, "{:?}", c.modules);
        for (before, after) in [
            ("netfs", "fscache"),
            ("fscache", "9p"),
            ("9pnet", "9p"),
            ("virtio_ring", "virtio_pci"),
            ("virtio", "9pnet_virtio"),
            ("crct10dif_generic", "crc_t10dif"),
            ("crc_t10dif", "t10_pi"),
            ("t10_pi", "sd_mod"),
            ("scsi_mod", "sd_mod"),
        ] {
            assert!(
                position(&c.modules, before) < position(&c.modules, after),
                "{before} < {after}"
            );
        }
        assert_eq!(db.load_order("9p"), ["9pnet", "netfs", "fscache", "9p"]);
        assert!(db.load_order("nope").is_empty());
    }

    #[test]
    fn resolves_names_and_aliases() {
        let db = db();
        assert_eq!(
            db.resolve("t10-pi"),
            Resolved::Modules(vec!["t10_pi".into()])
        );
        assert_eq!(db.resolve("fs-9p"), Resolved::Modules(vec!["9p".into()]));
        assert_eq!(
            db.resolve("pci:v00001AF4d00001009sv00001AF4sd00000009bc00sc02i00"),
            Resolved::Modules(vec!["virtio_pci".into()])
        );
        assert_eq!(db.resolve("libata"), Resolved::Builtin);
        assert_eq!(db.resolve("pci:v000015ADd000007C0sv*"), Resolved::Missing);
    }

    #[test]
    fn index_files_of_a_subset() {
        let db = db();
        let c = db.closure(["9p", "sd_mod"]);
        let sub = db.subset(c.modules.iter().map(String::as_str));
        assert_eq!(sub.len(), c.modules.len());
        let dep = sub.modules_dep();
        assert!(
            dep.contains(
                "kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko\n"
            ),
            "{dep}"
        );
        assert!(dep.contains("kernel/fs/netfs/netfs.ko:\n"));
        assert!(!dep.contains("virtio"), "{dep}");
        let alias = sub.modules_alias();
        assert!(alias.contains("alias fs-9p 9p\n"));
        assert!(!alias.contains("virtio"));
        let softdep = sub.modules_softdep();
        assert!(
            softdep.contains("softdep crc_t10dif pre: crct10dif\n"),
            "{softdep}"
        );
        assert!(!softdep.contains("nothere"), "{softdep}");
        assert_eq!(
            sub.modules_builtin(),
            "kernel/drivers/ata/libata.ko\nkernel/fs/ext4/ext4.ko\n"
        );
        let lines: Vec<&str> = dep.lines().collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "sorted by path");
    }

    /// Each hard dependency (as the module's modules.dep line lists it)
    /// comes before the module in `order` (paths).
    fn assert_valid_order(db: &ModuleDb, order: &[String]) {
        for (i, path) in order.iter().enumerate() {
            let m = db.modules().find(|m| &m.path == path).unwrap();
            for dep in &m.info.depends {
                let dep_path = &db.get(dep).unwrap().path;
                let at = order.iter().position(|p| p == dep_path);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{dep} must come before {path}: {order:?}"
                );
            }
        }
    }

    #[test]
    fn pid1_reads_the_index_files() {
        let db = db();
        let c = db.closure(["9p", "9pnet_virtio", "virtio_pci", "sd_mod"]);
        let sub = db.subset(c.modules.iter().map(String::as_str));
        let index = osam_init::kmod::ModuleIndex::parse(
            &sub.modules_dep(),
            &sub.modules_alias(),
            &sub.modules_builtin(),
            &sub.modules_softdep(),
        );
        assert_eq!(index.len(), sub.len());
        for name in ["9p", "9pnet_virtio", "virtio_pci", "sd_mod", "crc_t10dif"] {
            let mut theirs = index.load_order(name).unwrap();
            assert_valid_order(&sub, &theirs);
            let mut ours: Vec<String> = sub
                .closure([name])
                .modules
                .iter()
                .map(|m| sub.get(m).unwrap().path.clone())
                .collect();
            theirs.sort();
            ours.sort();
            assert_eq!(theirs, ours, "{name}");
        }
        assert_eq!(index.resolve("fs-9p"), ["9p"]);
        assert_eq!(
            index.match_modalias("virtio:d00000009v00001AF4"),
            ["9pnet_virtio"]
        );
        assert!(index.is_builtin("ext4"));
    }

    #[test]
    fn scans_a_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ko = |info: &[u8]| modinfo::tests::fake_module(info);
        fs::create_dir_all(dir.join("kernel/fs/9p")).unwrap();
        fs::create_dir_all(dir.join("kernel/net/9p")).unwrap();
        fs::write(
            dir.join("kernel/fs/9p/9p.ko"),
            ko(b"name=9p\0depends=9pnet\0alias=fs-9p\0"),
        )
        .unwrap();
        let xz = crate::xz::compress_xz_crc32(&ko(b"name=9pnet\0depends=\0"), 1).unwrap();
        fs::write(dir.join("kernel/net/9p/9pnet.ko.xz"), xz).unwrap();
        fs::write(dir.join("kernel/net/9p/README"), "not a module").unwrap();
        fs::write(dir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.join("build")).unwrap();
        let db = ModuleDb::scan(dir).unwrap();
        assert_eq!(db.len(), 2);
        assert_eq!(db.get("9pnet").unwrap().path, "kernel/net/9p/9pnet.ko.xz");
        assert!(db.is_builtin("ext4"));
        assert_eq!(db.closure(["fs-9p"]).modules, ["9pnet", "9p"]);
    }
}
