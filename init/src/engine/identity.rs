//! The storage identity map: every way the source guest names a disk,
//! partition, file system or volume → the target's name for it, in the
//! form the guest's configuration should use (`UUID=…` by default).

use std::collections::BTreeMap;

/// Source reference → target reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMap {
    map: BTreeMap<String, String>,
}

impl IdentityMap {
    /// A map from explicit pairs (tests, and the builders below).
    pub fn from_pairs<S: AsRef<str>, T: AsRef<str>>(pairs: &[(S, T)]) -> IdentityMap {
        IdentityMap {
            map: pairs
                .iter()
                .map(|(s, t)| (s.as_ref().to_string(), t.as_ref().to_string()))
                .collect(),
        }
    }

    /// Adds one mapping.
    pub fn insert(&mut self, source: &str, target: &str) {
        self.map.insert(source.to_string(), target.to_string());
    }

    /// The target reference for a source reference as written in a guest
    /// file (`/dev/sda1`, `UUID=…`, `/dev/disk/by-uuid/…`); `None` when it
    /// is not a replica's, or already names the target.
    pub fn rewrite(&self, reference: &str) -> Option<String> {
        let t = self.map.get(reference)?;
        (t != reference).then(|| t.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every mapping, sorted by source.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(s, t)| (s.as_str(), t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_known_references_only() {
        let m = IdentityMap::from_pairs(&[("/dev/sda1", "UUID=abc"), ("UUID=abc", "UUID=abc")]);
        assert_eq!(m.rewrite("/dev/sda1").as_deref(), Some("UUID=abc"));
        assert_eq!(m.rewrite("UUID=abc"), None);
        assert_eq!(m.rewrite("/dev/sdb1"), None);
    }
}
