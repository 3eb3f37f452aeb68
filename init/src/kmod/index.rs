//! The module index: `modules.dep`, `modules.alias`, `modules.builtin`
//! and `modules.softdep` as `depmod` writes them, parsed from text, and
//! the questions PID 1 asks of them (which modules serve this alias, in
//! which order to load them).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::Path;

use super::glob::Glob;
use super::{KmodError, module_name, normalize_alias, normalize_name};

/// The largest index file read (a full distribution's `modules.alias` is
/// about 1.5 MiB).
const MAX_INDEX_FILE: u64 = 32 << 20;

/// One loadable module from `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Module {
    /// The path relative to the module directory, as `modules.dep` has it.
    path: String,
    /// The names of the modules it needs, as listed.
    deps: Vec<String>,
}

/// One `alias` line: a pattern (normalised) and the module it names.
#[derive(Debug, Clone)]
struct Alias {
    pattern: Glob,
    module: String,
}

/// The soft dependencies of one module (`modules.softdep`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoftDeps {
    /// Modules to load before it, if they exist.
    pub pre: Vec<String>,
    /// Modules to load after it, if they exist.
    pub post: Vec<String>,
}

/// What the module directory of one kernel says about its modules.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    modules: HashMap<String, Module>,
    aliases: Vec<Alias>,
    builtin: HashSet<String>,
    softdeps: HashMap<String, SoftDeps>,
}

/// Lines of an index file without comments and blank lines.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Reads an index file, refusing absurd sizes.
fn read_index_file(path: &Path) -> Result<String, KmodError> {
    let read_err = |source| KmodError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_INDEX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_INDEX_FILE {
        return Err(KmodError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_INDEX_FILE,
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads an optional index file: a missing one is empty; one that cannot
/// be read is logged and taken as empty.
fn read_optional(path: &Path) -> String {
    match read_index_file(path) {
        Ok(text) => text,
        Err(KmodError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            String::new()
        }
        Err(e) => {
            crate::logging::warn(format!("ignoring {}: {e}", path.display()));
            String::new()
        }
    }
}

impl ModuleIndex {
    /// Builds an index from the text of `modules.dep`, `modules.alias`,
    /// `modules.builtin` and `modules.softdep` (any may be empty).
    /// Malformed lines are skipped.
    pub fn parse(dep: &str, alias: &str, builtin: &str, softdep: &str) -> ModuleIndex {
        let mut index = ModuleIndex::default();
        index.parse_dep(dep);
        index.parse_alias(alias);
        index.builtin = lines(builtin).map(module_name).collect();
        index.parse_softdep(softdep);
        index
    }

    /// Reads the index files of a module directory such as
    /// `/lib/modules/6.1.0-18-amd64`. `modules.dep` must exist; the others
    /// may be missing.
    pub fn load(moddir: &Path) -> Result<ModuleIndex, KmodError> {
        let dep = read_index_file(&moddir.join("modules.dep"))?;
        let alias = read_optional(&moddir.join("modules.alias"));
        let builtin = read_optional(&moddir.join("modules.builtin"));
        let softdep = read_optional(&moddir.join("modules.softdep"));
        Ok(ModuleIndex::parse(&dep, &alias, &builtin, &softdep))
    }

    fn parse_dep(&mut self, text: &str) {
        let mut dep_paths = Vec::new();
        for line in lines(text) {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            let name = module_name(path);
            if name.is_empty() || self.modules.contains_key(&name) {
                continue;
            }
            let deps: Vec<&str> = deps.split_whitespace().collect();
            dep_paths.extend(deps.iter().map(|d| d.to_string()));
            let module = Module {
                path: path.to_string(),
                deps: deps
                    .iter()
                    .map(|d| module_name(d))
                    .filter(|d| !d.is_empty() && *d != name)
                    .collect(),
            };
            self.modules.insert(name, module);
        }
        // A dependency without a line of its own still has a known path.
        for path in dep_paths {
            let name = module_name(&path);
            if !name.is_empty() {
                self.modules.entry(name).or_insert(Module {
                    path,
                    deps: Vec::new(),
                });
            }
        }
    }

    fn parse_alias(&mut self, text: &str) {
        for line in lines(text) {
            let mut words = line.split_whitespace();
            let (Some("alias"), Some(pattern), Some(module), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            if pattern.starts_with("symbol:") {
                continue;
            }
            self.aliases.push(Alias {
                pattern: Glob::new(&normalize_alias(pattern)),
                module: normalize_name(module),
            });
        }
    }

    fn parse_softdep(&mut self, text: &str) {
        for line in lines(text) {
            let mut words = line.split_whitespace();
            let (Some("softdep"), Some(module)) = (words.next(), words.next()) else {
                continue;
            };
            let entry = self.softdeps.entry(normalize_name(module)).or_default();
            let mut list: Option<&mut Vec<String>> = None;
            for word in words {
                match word {
                    "pre:" => list = Some(&mut entry.pre),
                    "post:" => list = Some(&mut entry.post),
                    w => {
                        if let Some(l) = list.as_mut() {
                            let name = normalize_name(w);
                            if !l.contains(&name) {
                                l.push(name);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether `name` is a loadable module of this kernel.
    pub fn contains(&self, name: &str) -> bool {
        self.modules.contains_key(&normalize_name(name))
    }

    /// Whether `name` is built into the kernel (`modules.builtin`).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize_name(name))
    }

    /// The path of a loadable module, relative to the module directory.
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.modules
            .get(&normalize_name(name))
            .map(|m| m.path.as_str())
    }

    /// The soft dependencies of `name`, if it has any.
    pub fn softdeps(&self, name: &str) -> Option<&SoftDeps> {
        self.softdeps.get(&normalize_name(name))
    }

    /// The number of loadable modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether the index knows no loadable module.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The modules a name or alias stands for: the module itself when
    /// `name_or_alias` names a loadable or built-in module, otherwise every
    /// module with a matching `modules.alias` pattern (`fs-ext4`,
    /// `net-pf-40`, `pci:v...`), each once, in file order. Empty when
    /// nothing matches.
    pub fn resolve(&self, name_or_alias: &str) -> Vec<String> {
        let name = normalize_name(name_or_alias);
        if self.modules.contains_key(&name) || self.builtin.contains(&name) {
            return vec![name];
        }
        self.match_modalias(name_or_alias)
    }

    /// The modules whose alias patterns match a device's modalias (as in
    /// `/sys/devices/.../modalias`), each once, in file order.
    pub fn match_modalias(&self, modalias: &str) -> Vec<String> {
        let key = normalize_alias(modalias);
        let mut found: Vec<String> = Vec::new();
        for alias in &self.aliases {
            if alias.pattern.matches(&key) && !found.contains(&alias.module) {
                found.push(alias.module.clone());
            }
        }
        found
    }

    /// The loadable modules soft dependencies name: like `modprobe`, a
    /// soft dependency may be a module name or an alias.
    fn soft_targets(&self, names: &[String]) -> Vec<&str> {
        let mut found: Vec<&str> = Vec::new();
        for name in names {
            for m in self.resolve(name) {
                if let Some((key, _)) = self.modules.get_key_value(&m) {
                    if !found.contains(&key.as_str()) {
                        found.push(key.as_str());
                    }
                }
            }
        }
        found
    }

    /// The paths (relative to the module directory) to load, in order,
    /// for module `name`: its soft `pre:` dependencies, its dependencies,
    /// the module itself, then its soft `post:` dependencies, each once,
    /// dependencies before the modules needing them. A built-in module
    /// needs nothing (empty list). Soft dependencies are looked up as names
    /// or aliases; those that do not exist or are built in are skipped; a cycle through hard dependencies is
    /// an error, one through soft dependencies is broken silently.
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, KmodError> {
        let root = normalize_name(name);
        if !self.modules.contains_key(&root) {
            if self.builtin.contains(&root) {
                return Ok(Vec::new());
            }
            return Err(KmodError::UnknownModule { name: root });
        }

        enum Task<'a> {
            /// Visit a module reached through a hard (`true`) or soft edge.
            Enter(&'a str, bool),
            /// All that must come first is done: emit the module.
            Exit(&'a str),
        }
        #[derive(PartialEq)]
        enum Mark {
            Open,
            Done,
        }

        let mut marks: HashMap<&str, Mark> = HashMap::new();
        let mut path: Vec<&str> = Vec::new();
        let mut order = Vec::new();
        let mut stack = vec![Task::Enter(root.as_str(), true)];
        while let Some(task) = stack.pop() {
            match task {
                Task::Enter(name, hard) => {
                    match marks.get(name) {
                        Some(Mark::Done) => continue,
                        Some(Mark::Open) if hard => {
                            let mut chain: Vec<String> = path
                                .iter()
                                .skip_while(|n| **n != name)
                                .map(|n| n.to_string())
                                .collect();
                            chain.push(name.to_string());
                            return Err(KmodError::DependencyCycle { chain });
                        }
                        Some(Mark::Open) => continue,
                        None => {}
                    }
                    let Some((key, module)) = self.modules.get_key_value(name) else {
                        // A soft dependency that is not a loadable module.
                        continue;
                    };
                    let key = key.as_str();
                    marks.insert(key, Mark::Open);
                    path.push(key);
                    stack.push(Task::Exit(key));
                    // Pushed in reverse: the stack runs them first to last.
                    for dep in module.deps.iter().rev() {
                        stack.push(Task::Enter(dep, true));
                    }
                    let pre = self.softdeps.get(key).map(|s| s.pre.as_slice());
                    for m in self.soft_targets(pre.unwrap_or(&[])).into_iter().rev() {
                        stack.push(Task::Enter(m, false));
                    }
                }
                Task::Exit(name) => {
                    marks.insert(name, Mark::Done);
                    path.pop();
                    if let Some(module) = self.modules.get(name) {
                        order.push(module.path.clone());
                    }
                    let post = self.softdeps.get(name).map(|s| s.post.as_slice());
                    for m in self.soft_targets(post.unwrap_or(&[])).into_iter().rev() {
                        stack.push(Task::Enter(m, false));
                    }
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko.zst
kernel/drivers/scsi/vmw_pvscsi.ko.zst:
kernel/fs/ext4/ext4.ko.gz: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/net/vmw_vsock/vmw_vsock_vmci_transport.ko: kernel/net/vmw_vsock/vsock.ko kernel/drivers/misc/vmw_vmci/vmw_vmci.ko
kernel/net/vmw_vsock/vsock.ko:
kernel/drivers/misc/vmw_vmci/vmw_vmci.ko:
# a comment
not a dependency line
";

    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v000015ADd000007C0sv*sd*bc*sc*i* vmw_pvscsi
alias fs-9p 9p
alias fs-ext4 ext4
alias ext3 ext4
alias net-pf-40 vmw_vsock_vmci_transport
alias pci:v000015ADd00000740sv*sd*bc*sc*i* vmw_vmci
alias symbol:jbd2_journal_start jbd2
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias crypto-crc32c crc32c-intel
alias crypto-crc32c crc32c_generic
alias broken
";

    const BUILTIN: &str = "\
kernel/drivers/scsi/sd_mod.ko
kernel/drivers/ata/ahci.ko
kernel/fs/vfat/vfat.ko
";

    const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crc32c
softdep crc32c_generic pre: crc32c-intel
softdep 9p post: 9pnet_virtio nonexistent pre: sd_mod
";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, ALIAS, BUILTIN, SOFTDEP)
    }

    #[test]
    fn parses_and_normalises() {
        let idx = index();
        assert!(idx.contains("9p"));
        assert!(idx.contains("crc32c_intel"));
        assert!(idx.contains("crc32c-intel"));
        assert!(
            idx.contains("virtio_ring"),
            "a dependency without its own line"
        );
        assert!(!idx.contains("sd_mod"));
        assert!(idx.is_builtin("sd_mod"));
        assert!(idx.is_builtin("sd-mod"));
        assert!(!idx.is_builtin("ext4"));
        assert_eq!(idx.path_of("ext4"), Some("kernel/fs/ext4/ext4.ko.gz"));
        assert_eq!(
            idx.softdeps("9p"),
            Some(&SoftDeps {
                pre: vec!["sd_mod".into()],
                post: vec!["9pnet_virtio".into(), "nonexistent".into()],
            })
        );
        assert_eq!(idx.len(), 15);
    }

    #[test]
    fn resolves() {
        let idx = index();
        let table: &[(&str, &[&str])] = &[
            ("9p", &["9p"]),
            ("vmw-pvscsi", &["vmw_pvscsi"]),
            ("sd_mod", &["sd_mod"]),
            ("fs-9p", &["9p"]),
            ("fs_9p", &["9p"]),
            ("fs-ext4", &["ext4"]),
            ("ext3", &["ext4"]),
            ("net-pf-40", &["vmw_vsock_vmci_transport"]),
            ("crypto-crc32c", &["crc32c_generic", "crc32c_intel"]),
            (
                "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00",
                &["vmw_pvscsi"],
            ),
            ("pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00", &[]),
            ("jbd2_journal_start", &[]),
            ("symbol:jbd2_journal_start", &[]),
            ("nothing", &[]),
        ];
        for (query, want) in table {
            assert_eq!(idx.resolve(query), *want, "{query}");
        }
    }

    #[test]
    fn load_orders() {
        let idx = index();
        let table: &[(&str, &[&str])] = &[
            ("netfs", &["kernel/fs/netfs/netfs.ko"]),
            (
                "9p",
                &[
                    "kernel/net/9p/9pnet.ko",
                    "kernel/fs/netfs/netfs.ko",
                    "kernel/fs/9p/9p.ko",
                    "kernel/drivers/virtio/virtio_ring.ko.zst",
                    "kernel/net/9p/9pnet_virtio.ko.xz",
                ],
            ),
            (
                "ext4",
                &[
                    // The soft dependency "crc32c" is an alias of
                    // crc32c_generic, which wants crc32c-intel first.
                    "kernel/arch/x86/crypto/crc32c-intel.ko",
                    "kernel/crypto/crc32c_generic.ko",
                    "kernel/lib/crc16.ko",
                    "kernel/fs/mbcache.ko",
                    "kernel/fs/jbd2/jbd2.ko",
                    "kernel/fs/ext4/ext4.ko.gz",
                ],
            ),
            (
                "crc32c_generic",
                &[
                    "kernel/arch/x86/crypto/crc32c-intel.ko",
                    "kernel/crypto/crc32c_generic.ko",
                ],
            ),
            (
                "vmw_vsock_vmci_transport",
                &[
                    "kernel/net/vmw_vsock/vsock.ko",
                    "kernel/drivers/misc/vmw_vmci/vmw_vmci.ko",
                    "kernel/net/vmw_vsock/vmw_vsock_vmci_transport.ko",
                ],
            ),
            ("sd_mod", &[]),
        ];
        for (name, want) in table {
            assert_eq!(idx.load_order(name).unwrap(), *want, "{name}");
        }
        assert!(matches!(
            idx.load_order("nothing"),
            Err(KmodError::UnknownModule { .. })
        ));
        // An alias is not a module name.
        assert!(idx.load_order("fs-9p").is_err());
    }

    #[test]
    fn shared_dependencies_come_once() {
        let dep = "a.ko: c.ko b.ko\nb.ko: c.ko\nc.ko:\n";
        let idx = ModuleIndex::parse(dep, "", "", "");
        assert_eq!(idx.load_order("a").unwrap(), ["c.ko", "b.ko", "a.ko"]);
    }

    #[test]
    fn hard_cycles_are_errors() {
        let dep = "a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n";
        let idx = ModuleIndex::parse(dep, "", "", "");
        match idx.load_order("a") {
            Err(KmodError::DependencyCycle { chain }) => {
                assert_eq!(chain, ["a", "b", "c", "a"]);
            }
            other => panic!("{other:?}"),
        }
        let selfdep = ModuleIndex::parse("a.ko: a.ko\n", "", "", "");
        assert_eq!(selfdep.load_order("a").unwrap(), ["a.ko"]);
    }

    #[test]
    fn soft_cycles_are_broken() {
        let dep = "a.ko:\nb.ko:\n";
        let softdep = "softdep a pre: b\nsoftdep b pre: a post: a\n";
        let idx = ModuleIndex::parse(dep, "", "", softdep);
        assert_eq!(idx.load_order("a").unwrap(), ["b.ko", "a.ko"]);
        assert_eq!(idx.load_order("b").unwrap(), ["a.ko", "b.ko"]);
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let n = 100_000;
        let mut dep = String::new();
        for i in 0..n {
            dep.push_str(&format!("m{i}.ko: m{}.ko\n", i + 1));
        }
        dep.push_str(&format!("m{n}.ko:\n"));
        let idx = ModuleIndex::parse(&dep, "", "", "");
        let order = idx.load_order("m0").unwrap();
        assert_eq!(order.len(), n + 1);
        assert_eq!(
            order.first().map(String::as_str),
            Some(format!("m{n}.ko").as_str())
        );
        assert_eq!(order.last().map(String::as_str), Some("m0.ko"));
    }

    #[test]
    fn loads_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ModuleIndex::load(dir.path()),
            Err(KmodError::Read { .. })
        ));
        std::fs::write(dir.path().join("modules.dep"), DEP).unwrap();
        let idx = ModuleIndex::load(dir.path()).unwrap();
        assert!(idx.contains("9p"));
        assert!(idx.resolve("fs-9p").is_empty());
        std::fs::write(dir.path().join("modules.alias"), ALIAS).unwrap();
        std::fs::write(dir.path().join("modules.builtin"), BUILTIN).unwrap();
        let idx = ModuleIndex::load(dir.path()).unwrap();
        assert_eq!(idx.resolve("fs-9p"), ["9p"]);
        assert!(idx.is_builtin("ahci"));
    }
}
