//! The network fixup: NICs get their target names (`eth0`, `eth1`, … by
//! default) and every MAC pin moves to the target MAC, from
//! network-interface-map.json (source name + source MAC → target name +
//! target MAC). With `renameInterfaces: false` the names are kept and only
//! the MAC pins move.
//!
//! Formats, one submodule each, every one a pure text-in/text-out
//! rewriter:
//! - [`udev`]: `70-persistent-net.rules`, rewritten or created with one
//!   rule per NIC naming it by its target MAC, and the other
//!   `/etc/udev/rules.d/*.rules`;
//! - [`ifcfg`]: RHEL's `network-scripts/{ifcfg,route,route6,rule,rule6}-*`
//!   and `/etc/sysconfig/network`, SUSE's `ifcfg-*`, `ifroute-*`,
//!   `ifrule-*` and `routes` (files renamed after their NIC);
//! - [`keyfile`]: NetworkManager keyfiles (renamed when named after their
//!   NIC) and NetworkManager's own configuration;
//! - [`netplan`]: `/etc/netplan/*.yaml`, edited as text;
//! - [`interfaces`]: `/etc/network/interfaces` and what it `source`s;
//! - [`networkd`]: `/etc/systemd/network/*.{network,link,netdev}`, and a
//!   `.link` file per NIC on systemd guests;
//! - [`cloudinit`]: a drop-in that stops cloud-init from regenerating the
//!   network configuration.
//!
//! The names stick without relying on `net.ifnames=0`: the udev rules
//! (and on systemd guests the `.link` files) name each NIC by its target
//! MAC. With `net.ifnames=0` the kernel already names the NICs eth0, eth1,
//! … in PCI order, which is the map's order, so no rename collides.
//!
//! Every rewrite is computed in one pass over the original text, so swaps
//! (ens192 → eth1 while eth1 → eth0) never collide; a file renamed onto a
//! name that another renamed file leaves is written, not renamed. The udev
//! rules are the last edit: when they already hold this map's rules, a
//! previous run finished and names are not rewritten again (a swap would
//! otherwise move them once more). Finally every network file's planned
//! contents are scanned for a remaining source name or source MAC
//! ([`codes::NETWORK_STALE_REFERENCE`]).

pub mod cloudinit;
pub mod ifcfg;
pub mod interfaces;
pub mod keyfile;
pub mod netplan;
pub mod networkd;
pub mod text;
pub mod udev;

use std::collections::{BTreeSet, VecDeque};

use crate::detect::InitSystem;
use crate::engine::plan::{Edit, GuestFiles, Plan, PlanCtx};
use crate::error::{FixupError, Warning, codes};
use text::{Mapper, Nic, Rewrite};

const RHEL_SCRIPTS: &str = "/etc/sysconfig/network-scripts";
/// A file on RHEL (`GATEWAYDEV=`), a directory on SUSE.
const SYSCONFIG_NETWORK: &str = "/etc/sysconfig/network";
const NM_CONNECTIONS: &str = "/etc/NetworkManager/system-connections";
const NM_CONF: &str = "/etc/NetworkManager/NetworkManager.conf";
const NM_CONF_D: &str = "/etc/NetworkManager/conf.d";
const NETPLAN: &str = "/etc/netplan";
const INTERFACES: &str = "/etc/network/interfaces";
const UDEV_RULES_D: &str = "/etc/udev/rules.d";
/// How many files `/etc/network/interfaces` may pull in.
const MAX_INTERFACES_FILES: usize = 256;

/// The kind of a network configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Udev,
    /// A per-interface sysconfig file (renamed after its NIC).
    Ifcfg,
    /// A sysconfig file of shell variables or route lines, not renamed.
    Shell,
    Keyfile,
    NmConf,
    Netplan,
    Interfaces,
    Networkd,
}

impl Format {
    fn rewrite(self, text: &str, m: &Mapper) -> Rewrite {
        match self {
            Format::Udev => udev::rewrite(text, m),
            Format::Ifcfg | Format::Shell => ifcfg::rewrite(text, m),
            Format::Keyfile | Format::NmConf => keyfile::rewrite(text, m),
            Format::Netplan => netplan::rewrite(text, m),
            Format::Interfaces => interfaces::rewrite(text, m),
            Format::Networkd => networkd::rewrite(text, m),
        }
    }

    fn stale(self, text: &str, m: &Mapper) -> Vec<(usize, String)> {
        match self {
            Format::Udev => udev::stale(text, m),
            Format::Ifcfg | Format::Shell => ifcfg::stale(text, m),
            Format::Keyfile | Format::NmConf => keyfile::stale(text, m),
            Format::Netplan => netplan::stale(text, m),
            Format::Interfaces => interfaces::stale(text, m),
            Format::Networkd => networkd::stale(text, m),
        }
    }

    /// The file's new name when it is named after a renamed NIC.
    fn renamed(self, name: &str, m: &Mapper) -> Option<String> {
        match self {
            Format::Ifcfg => ifcfg::renamed_file(name, m),
            Format::Keyfile | Format::Netplan | Format::Networkd => m.words(name),
            Format::Udev | Format::Shell | Format::NmConf | Format::Interfaces => None,
        }
    }

    /// The mode of a file created under a new name.
    fn mode(self) -> u32 {
        match self {
            Format::Keyfile | Format::Netplan => 0o600,
            _ => 0o644,
        }
    }
}

/// A network configuration file of the guest.
#[derive(Debug)]
struct Found {
    path: String,
    format: Format,
    text: String,
}

/// Finds the guest's network configuration files.
struct Finder<'a> {
    files: &'a dyn GuestFiles,
    found: Vec<Found>,
    seen: BTreeSet<String>,
    warnings: Vec<Warning>,
}

impl Finder<'_> {
    /// Reads one file; `true` when it was added.
    fn add(&mut self, path: String, format: Format) -> bool {
        if !self.seen.insert(path.clone()) || self.files.is_dir(&path) {
            return false;
        }
        match self.files.read(&path) {
            Ok(Some(text)) => {
                self.found.push(Found { path, format, text });
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.warnings.push(unreadable(&path, &e));
                false
            }
        }
    }

    fn add_dir(&mut self, dir: &str, format: Format, take: impl Fn(&str) -> bool) {
        match self.files.list(dir) {
            Ok(names) => {
                for name in names.iter().filter(|n| take(n)) {
                    self.add(join(dir, name), format);
                }
            }
            Err(e) => self.warnings.push(unreadable(dir, &e)),
        }
    }

    /// `/etc/network/interfaces` and the files it sources, breadth first.
    fn add_interfaces(&mut self) {
        let mut queue = VecDeque::from([INTERFACES.to_string()]);
        let mut count = 0;
        while let Some(path) = queue.pop_front() {
            if count >= MAX_INTERFACES_FILES {
                self.warnings.push(Warning::new(
                    codes::NETWORK_UNREADABLE,
                    format!(
                        "{INTERFACES}: more than {MAX_INTERFACES_FILES} files sourced; \
                         the rest is left as it is"
                    ),
                ));
                break;
            }
            if !self.add(path.clone(), Format::Interfaces) {
                continue;
            }
            count += 1;
            let includes = self
                .found
                .last()
                .map(|f| interfaces::includes(&f.text))
                .unwrap_or_default();
            let dir = parent(&path);
            for include in includes {
                match include {
                    interfaces::Include::Files(pattern) => {
                        queue.extend(expand(self.files, &absolute(dir, &pattern)));
                    }
                    interfaces::Include::Directory(d) => {
                        let d = absolute(dir, &d);
                        let names = self.files.list(&d).unwrap_or_default();
                        queue.extend(
                            names
                                .iter()
                                .filter(|n| interfaces::is_run_parts_name(n))
                                .map(|n| join(&d, n)),
                        );
                    }
                }
            }
        }
    }
}

fn unreadable(path: &str, e: &std::io::Error) -> Warning {
    Warning::new(
        codes::NETWORK_UNREADABLE,
        format!("{path}: cannot be read ({e}); it is left as it is"),
    )
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn absolute(dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        join(dir, path)
    }
}

/// The regular files matching a glob (wildcards in any component; hidden
/// names only when asked for), sorted.
fn expand(files: &dyn GuestFiles, pattern: &str) -> Vec<String> {
    let mut paths = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for p in &paths {
            if text::is_glob(comp) {
                let dir = if p.is_empty() { "/" } else { p.as_str() };
                for name in files.list(dir).unwrap_or_default() {
                    if text::glob_match(comp.as_bytes(), name.as_bytes())
                        && (!name.starts_with('.') || comp.starts_with('.'))
                    {
                        next.push(format!("{p}/{name}"));
                    }
                }
            } else {
                next.push(format!("{p}/{comp}"));
            }
        }
        paths = next;
    }
    paths.retain(|p| !p.is_empty() && files.exists(p) && !files.is_dir(p));
    paths.sort();
    paths
}

/// Every network configuration file of the guest.
fn discover(files: &dyn GuestFiles) -> (Vec<Found>, Vec<Warning>) {
    let mut f = Finder {
        files,
        found: Vec::new(),
        seen: BTreeSet::new(),
        warnings: Vec::new(),
    };
    // The persistent-net rules are regenerated as a whole.
    f.seen.insert(udev::PERSISTENT_RULES.to_string());
    f.add_dir(UDEV_RULES_D, Format::Udev, |n| n.ends_with(".rules"));
    f.add_dir(RHEL_SCRIPTS, Format::Ifcfg, ifcfg::is_interface_file);
    if files.is_dir(SYSCONFIG_NETWORK) {
        f.add_dir(SYSCONFIG_NETWORK, Format::Ifcfg, ifcfg::is_interface_file);
        f.add(join(SYSCONFIG_NETWORK, "routes"), Format::Shell);
    } else {
        f.add(SYSCONFIG_NETWORK.to_string(), Format::Shell);
    }
    f.add_dir(NM_CONNECTIONS, Format::Keyfile, |_| true);
    f.add(NM_CONF.to_string(), Format::NmConf);
    f.add_dir(NM_CONF_D, Format::NmConf, |n| n.ends_with(".conf"));
    f.add_dir(NETPLAN, Format::Netplan, |n| {
        n.ends_with(".yaml") || n.ends_with(".yml")
    });
    f.add_interfaces();
    f.add_dir(networkd::DIR, Format::Networkd, networkd::is_unit_name);
    (f.found, f.warnings)
}

/// One file's planned state.
struct Change {
    from: String,
    to: String,
    format: Format,
    contents: String,
    changed: bool,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The network fixup's planner.
pub fn plan(ctx: &PlanCtx) -> Result<Plan, FixupError> {
    let inputs = ctx.inputs;
    if inputs.nics.interfaces.is_empty() {
        return Ok(Plan {
            summary: "no NICs in network-interface-map.json".into(),
            ..Plan::default()
        });
    }
    let rename = inputs.system.options.rename_interfaces;
    let nics: Vec<Nic> = inputs
        .nics
        .interfaces
        .iter()
        .zip(inputs.effective_target_names())
        .map(|(i, target_name)| Nic {
            source_name: i.source_name.clone(),
            source_mac: i.source_mac,
            target_name,
            target_mac: i.target_mac,
        })
        .collect();
    let files = ctx.files;
    let mut warnings = Vec::new();

    let udev_existing = match files.read(udev::PERSISTENT_RULES) {
        Ok(text) => Ok(text),
        Err(e) => {
            warnings.push(unreadable(udev::PERSISTENT_RULES, &e));
            Err(())
        }
    };
    let mut m = Mapper::new(nics, rename);
    let already = matches!(&udev_existing, Ok(Some(t)) if udev::is_applied(t, &m));
    if already {
        m = m.keeping_names();
    }

    let (found, w) = discover(files);
    warnings.extend(w);

    // Rewrite every file.
    let mut changes = Vec::new();
    for f in found {
        let Rewrite { text, notes } = f.format.rewrite(&f.text, &m);
        for (line, note) in notes {
            warnings.push(Warning::new(
                codes::NETWORK_GLOB_MATCH,
                format!("{}:{line}: {note}", f.path),
            ));
        }
        let to = f
            .format
            .renamed(file_name(&f.path), &m)
            .map(|name| join(parent(&f.path), &name))
            .unwrap_or_else(|| f.path.clone());
        let changed = text.is_some() || to != f.path;
        changes.push(Change {
            to,
            from: f.path,
            format: f.format,
            contents: text.unwrap_or(f.text),
            changed,
        });
    }

    // Renames: two onto one name keep the second file's name; a rename
    // onto an existing file that stays replaces it.
    let mut targets = BTreeSet::new();
    for c in changes.iter_mut().filter(|c| c.from != c.to) {
        if !targets.insert(c.to.clone()) {
            warnings.push(Warning::new(
                codes::NETWORK_FILE_REPLACED,
                format!("{}: would also become {}; it keeps its name", c.from, c.to),
            ));
            c.to = c.from.clone();
        }
    }
    let sources: BTreeSet<String> = changes
        .iter()
        .filter(|c| c.from != c.to)
        .map(|c| c.from.clone())
        .collect();
    let targets: BTreeSet<String> = changes
        .iter()
        .filter(|c| c.from != c.to)
        .map(|c| c.to.clone())
        .collect();
    let mut replaced = BTreeSet::new();
    for to in &targets {
        if !sources.contains(to) && files.exists(to) {
            warnings.push(Warning::new(
                codes::NETWORK_FILE_REPLACED,
                format!("{to}: replaced by the configuration of the renamed NIC"),
            ));
            replaced.insert(to.clone());
        }
    }
    changes.retain(|c| !(c.from == c.to && replaced.contains(&c.from)));
    let copy = targets
        .iter()
        .any(|t| sources.contains(t) || replaced.contains(t));

    // The final check: no live reference to a source name or MAC.
    for c in &changes {
        for (line, token) in c.format.stale(&c.contents, &m) {
            warnings.push(Warning::new(
                codes::NETWORK_STALE_REFERENCE,
                format!("{}:{line}: still references the source NIC's {token}", c.to),
            ));
        }
    }

    let mut edits = Vec::new();
    for c in changes.iter().filter(|c| c.changed && c.from == c.to) {
        edits.push(Edit::write(&c.to, c.contents.as_bytes()));
    }
    let renames: Vec<&Change> = changes.iter().filter(|c| c.from != c.to).collect();
    if copy {
        for c in &renames {
            edits.push(Edit::Write {
                path: c.to.clone(),
                contents: c.contents.as_bytes().to_vec(),
                mode: c.format.mode(),
            });
        }
        for c in renames.iter().filter(|c| !targets.contains(&c.from)) {
            edits.push(Edit::Remove {
                path: c.from.clone(),
            });
        }
    } else {
        for c in &renames {
            edits.push(Edit::Rename {
                from: c.from.clone(),
                to: c.to.clone(),
                contents: c.contents.as_bytes().to_vec(),
            });
        }
    }

    // The names' pins: .link files on systemd guests, udev rules (last).
    let mut links = BTreeSet::new();
    if ctx.info.init_system == InitSystem::Systemd {
        for nic in m.nics() {
            let (path, contents) = networkd::link_file(nic);
            if !matches!(files.read(&path), Ok(Some(t)) if t == contents) {
                edits.push(Edit::write(&path, contents));
            }
            links.insert(path);
        }
    }
    for name in files.list(networkd::DIR).unwrap_or_default() {
        let path = join(networkd::DIR, &name);
        if name.starts_with(networkd::LINK_PREFIX)
            && name.ends_with(".link")
            && !links.contains(&path)
        {
            edits.push(Edit::Remove { path });
        }
    }
    if files.is_dir(cloudinit::CONFIG_DIR)
        && !matches!(files.read(cloudinit::DROP_IN), Ok(Some(t)) if t == cloudinit::CONTENTS)
    {
        edits.push(Edit::write(cloudinit::DROP_IN, cloudinit::CONTENTS));
    }
    if let Ok(existing) = &udev_existing {
        let new = udev::persistent_rules(existing.as_deref().unwrap_or_default(), &m);
        if existing.as_deref() != Some(new.as_str()) {
            edits.push(Edit::write(udev::PERSISTENT_RULES, new));
        }
    }

    let summary = summary(&m, rename, already, &edits);
    Ok(Plan {
        edits,
        commands: Vec::new(),
        warnings,
        summary,
    })
}

fn summary(m: &Mapper, rename: bool, already: bool, edits: &[Edit]) -> String {
    let pairs: Vec<String> = m
        .nics()
        .iter()
        .filter(|n| n.source_name != n.target_name)
        .map(|n| format!("{}->{}", n.source_name, n.target_name))
        .collect();
    let what = if !rename {
        format!(
            "{} kept, MAC pins moved to the target MACs",
            plural(m.nics().len(), "NIC name", "NIC names")
        )
    } else if pairs.is_empty() {
        format!(
            "{} already named as in the target",
            plural(m.nics().len(), "NIC", "NICs")
        )
    } else if already {
        format!(
            "{} already renamed ({})",
            plural(pairs.len(), "NIC", "NICs"),
            pairs.join(", ")
        )
    } else {
        format!(
            "{} renamed ({})",
            plural(pairs.len(), "NIC", "NICs"),
            pairs.join(", ")
        )
    };
    // Files written or renamed (removals are the other half of a move).
    let touched: BTreeSet<&str> = edits
        .iter()
        .filter(|e| !matches!(e, Edit::Remove { .. }))
        .filter_map(|e| e.paths().last().copied())
        .collect();
    if touched.is_empty() {
        format!("{what}; nothing to change")
    } else {
        format!("{what} in {}", plural(touched.len(), "file", "files"))
    }
}

#[cfg(test)]
mod tests;
