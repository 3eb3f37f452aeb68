//! Builds guest directory trees for the `fixupctl` integration tests: files,
//! symlinks, a minimal ELF header, a gzip'ed newc cpio initramfs, and a
//! snapshot of a tree to compare it byte for byte after `fixupctl undo`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Where stage 1 keeps its own data in the guest (not compared after undo).
pub const OSAM_DATA: &str = "opt/vmware/hcx/osam/data";

/// A guest tree under construction.
pub struct Tree {
    pub root: PathBuf,
}

impl Tree {
    pub fn new(root: &Path) -> Self {
        Tree {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = self.root.join(p.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    /// A regular file with this text.
    pub fn file(&self, p: &str, text: &str) -> &Self {
        self.bytes(p, text.as_bytes())
    }

    pub fn bytes(&self, p: &str, data: &[u8]) -> &Self {
        fs::write(self.path(p), data).unwrap();
        self
    }

    /// A regular file with this text and mode.
    pub fn file_mode(&self, p: &str, text: &str, mode: u32) -> &Self {
        self.file(p, text);
        let p = self.path(p);
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// Empty files (tool binaries, markers), mode 0755.
    pub fn tools(&self, paths: &[&str]) -> &Self {
        for p in paths {
            self.file_mode(p, "", 0o755);
        }
        self
    }

    pub fn dir(&self, p: &str) -> &Self {
        fs::create_dir_all(self.root.join(p.trim_start_matches('/'))).unwrap();
        self
    }

    /// A symlink at `p` pointing at `target` (as written, relative or
    /// absolute within the guest).
    pub fn link(&self, p: &str, target: &str) -> &Self {
        symlink(target, self.path(p)).unwrap();
        self
    }

    /// A minimal 64-byte little-endian ELF64 executable header for x86_64.
    pub fn elf_x86_64(&self, p: &str) -> &Self {
        self.bytes(p, &elf64_header(0x3e));
        let p = self.path(p);
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        self
    }
}

/// A 64-byte ELF64 LE header of an executable for `machine`.
pub fn elf64_header(machine: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    h.extend_from_slice(&machine.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // e_version
    h.extend_from_slice(&0x401000u64.to_le_bytes()); // e_entry
    h.extend_from_slice(&0u64.to_le_bytes()); // e_phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&0u16.to_le_bytes()); // e_phnum
    h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(h.len(), 64);
    h
}

/// An entry of a newc cpio archive: a directory (`None`) or a file.
pub type CpioEntry<'a> = (&'a str, Option<&'a [u8]>);

/// A newc ("070701") cpio archive of these entries, with its trailer.
pub fn cpio_newc(entries: &[CpioEntry]) -> Vec<u8> {
    fn pad4(out: &mut Vec<u8>) {
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            if mode & 0o040000 != 0 { 2 } else { 1 },
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(out);
        out.extend_from_slice(data);
        pad4(out);
    }
    let mut out = Vec::new();
    for (i, (name, data)) in entries.iter().enumerate() {
        match data {
            None => entry(&mut out, i as u32 + 1, name, 0o040755, &[]),
            Some(d) => entry(&mut out, i as u32 + 1, name, 0o100644, d),
        }
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A small gzip'ed initramfs for kernel `v` holding `modules` (paths
/// relative to `lib/modules/<v>/`), an init and a shell, but never
/// `vmw_pvscsi`: the fixup has to plan a rebuild.
pub fn initramfs_image(v: &str, modules: &[&str]) -> Vec<u8> {
    let mut names: Vec<String> = vec![
        "usr".into(),
        "usr/bin".into(),
        "usr/lib".into(),
        "usr/lib/modules".into(),
        format!("usr/lib/modules/{v}"),
    ];
    for m in modules {
        assert!(!m.contains("vmw_pvscsi"));
        let p = format!("usr/lib/modules/{v}/{m}");
        let mut dir = String::new();
        for part in Path::new(&p).parent().unwrap().iter() {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(part.to_str().unwrap());
            if !names.contains(&dir) {
                names.push(dir.clone());
            }
        }
        names.push(p);
    }
    let dep = modules
        .iter()
        .map(|m| format!("{m}:\n"))
        .collect::<String>();
    let mut entries: Vec<CpioEntry> = names
        .iter()
        .map(|n| {
            let is_module = modules.iter().any(|m| n.ends_with(m));
            (n.as_str(), is_module.then_some(&b"\x7fELF"[..]))
        })
        .collect();
    let dep_path = format!("usr/lib/modules/{v}/modules.dep");
    entries.push((&dep_path, Some(dep.as_bytes())));
    entries.push(("init", Some(b"#!/bin/sh\nexec /sbin/init\n")));
    entries.push(("usr/bin/sh", Some(b"\x7fELF")));
    gzip(&cpio_newc(&entries))
}

/// A regular file's content and mode, or a symlink's target.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Node {
    File { data: Vec<u8>, mode: u32 },
    Link(PathBuf),
}

/// Every regular file and symlink under `root`, except stage 1's own data.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with(OSAM_DATA) {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            if md.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&p).unwrap()));
            } else if md.is_dir() {
                walk(root, &p, out);
            } else if md.is_file() {
                out.insert(
                    rel,
                    Node::File {
                        data: fs::read(&p).unwrap(),
                        mode: md.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The differences between two snapshots, one line each.
pub fn diff(before: &BTreeMap<PathBuf, Node>, after: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, n) in before {
        match after.get(p) {
            None => out.push(format!("missing after undo: /{}", p.display())),
            Some(m) if m != n => out.push(format!("differs after undo: /{}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            out.push(format!("left behind by undo: /{}", p.display()));
        }
    }
    out
}
