//! A guest seen through pending edits: `fixupctl plan` runs every planner
//! without writing, so each later planner must see what the earlier ones
//! would have written.

use std::collections::BTreeMap;
use std::io;

use crate::engine::plan::{Edit, GuestFiles};

/// What a path would hold after the edits so far.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    File(Vec<u8>),
    Link(String),
    Gone,
}

pub struct Overlay<'a> {
    base: &'a dyn GuestFiles,
    pending: BTreeMap<String, Pending>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn GuestFiles) -> Self {
        Overlay {
            base,
            pending: BTreeMap::new(),
        }
    }

    /// Records an edit as if applied.
    pub fn apply(&mut self, edit: &Edit) {
        match edit {
            Edit::Write { path, contents, .. } => {
                self.pending
                    .insert(path.clone(), Pending::File(contents.clone()));
            }
            Edit::Remove { path } => {
                self.pending.insert(path.clone(), Pending::Gone);
            }
            Edit::Rename { from, to, contents } => {
                self.pending.insert(from.clone(), Pending::Gone);
                self.pending
                    .insert(to.clone(), Pending::File(contents.clone()));
            }
            Edit::Symlink { path, target } => {
                self.pending
                    .insert(path.clone(), Pending::Link(target.clone()));
            }
            // The command that regenerates the file is not run here.
            Edit::Preserve { .. } => {}
        }
    }

    /// The current bytes of a path through the overlay (`None`: missing).
    pub fn current(&self, path: &str) -> Option<Vec<u8>> {
        match self.pending.get(path) {
            Some(Pending::File(b)) => Some(b.clone()),
            Some(Pending::Link(_)) | Some(Pending::Gone) => None,
            None => self.base.read_bytes(path, 1 << 30).ok().flatten(),
        }
    }
}

impl GuestFiles for Overlay<'_> {
    fn read(&self, path: &str) -> io::Result<Option<String>> {
        match self.pending.get(path) {
            Some(Pending::File(b)) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
            Some(Pending::Gone) => Ok(None),
            Some(Pending::Link(t)) => {
                if t.starts_with('/') {
                    self.read(t)
                } else {
                    Ok(None)
                }
            }
            None => self.base.read(path),
        }
    }

    fn read_bytes(&self, path: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        match self.pending.get(path) {
            Some(Pending::File(b)) => Ok(Some(b.clone())),
            Some(Pending::Gone) | Some(Pending::Link(_)) => Ok(None),
            None => self.base.read_bytes(path, max),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self.base.list(dir)?;
        let prefix = if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        };
        for (p, what) in &self.pending {
            if let Some(rest) = p.strip_prefix(&prefix) {
                let name = rest.split('/').next().unwrap_or(rest).to_string();
                if name.is_empty() {
                    continue;
                }
                if *what == Pending::Gone && !rest.contains('/') {
                    names.retain(|n| *n != name);
                } else if *what != Pending::Gone && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        match self.pending.get(path) {
            Some(Pending::Gone) => false,
            Some(_) => true,
            None => self.base.exists(path),
        }
    }

    fn is_dir(&self, path: &str) -> bool {
        self.base.is_dir(path)
    }

    fn read_link(&self, path: &str) -> Option<String> {
        match self.pending.get(path) {
            Some(Pending::Link(t)) => Some(t.clone()),
            Some(_) => None,
            None => self.base.read_link(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::MemFiles;

    #[test]
    fn later_reads_see_earlier_edits() {
        let base = MemFiles::new().with("/etc/fstab", "old\n").with(
            "/etc/sysconfig/network-scripts/ifcfg-ens192",
            "DEVICE=ens192\n",
        );
        let mut o = Overlay::new(&base);
        o.apply(&Edit::write("/etc/fstab", "new\n"));
        o.apply(&Edit::Rename {
            from: "/etc/sysconfig/network-scripts/ifcfg-ens192".into(),
            to: "/etc/sysconfig/network-scripts/ifcfg-eth0".into(),
            contents: b"DEVICE=eth0\n".to_vec(),
        });
        o.apply(&Edit::Symlink {
            path: "/etc/systemd/system/default.target".into(),
            target: "/lib/systemd/system/rescue.target".into(),
        });
        assert_eq!(o.read("/etc/fstab").unwrap().as_deref(), Some("new\n"));
        assert_eq!(
            o.list("/etc/sysconfig/network-scripts").unwrap(),
            vec!["ifcfg-eth0"]
        );
        assert!(!o.exists("/etc/sysconfig/network-scripts/ifcfg-ens192"));
        assert_eq!(
            o.read_link("/etc/systemd/system/default.target").as_deref(),
            Some("/lib/systemd/system/rescue.target")
        );
        assert_eq!(o.current("/etc/fstab"), Some(b"new\n".to_vec()));
    }
}
