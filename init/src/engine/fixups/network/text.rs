//! Name and MAC matching shared by every format: the [`Mapper`] rewrites
//! whole-word NIC names and MAC addresses in one pass over the original
//! text, so that swaps (ens192 → eth1 while eth1 → eth0) never collide.
//!
//! A name matches only as a whole word: the characters on either side are
//! not letters, digits or `_` (so `ens19` never matches inside `ens192`,
//! while `ens192.100`, `ifcfg-ens192` and `ens192:0` do match). MACs match
//! in any case, with `:` or `-` separators or none (12 hex digits), and are
//! written back in the style they were found in.

use crate::protocol::config::MacAddr;

/// One NIC of the map with its effective target name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub source_name: String,
    pub source_mac: MacAddr,
    pub target_name: String,
    pub target_mac: MacAddr,
}

/// What a format's rewriter gives: the new text (`None` when unchanged)
/// and notes for warnings, each with its 1-based line number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub text: Option<String>,
    pub notes: Vec<(usize, String)>,
}

/// Rewrites names and MACs of the network map.
#[derive(Debug, Clone)]
pub struct Mapper {
    nics: Vec<Nic>,
    /// Whether names are rewritten now.
    rename: bool,
    /// Whether the step renames NICs at all (for the stale check).
    rename_requested: bool,
    /// Indexes of `nics`, longest source name first.
    by_len: Vec<usize>,
}

impl Mapper {
    /// `rename`: `renameInterfaces` (without it names are kept and only
    /// MACs move).
    pub fn new(nics: Vec<Nic>, rename: bool) -> Mapper {
        let mut by_len: Vec<usize> = (0..nics.len()).collect();
        by_len.sort_by_key(|&i| std::cmp::Reverse(nics[i].source_name.len()));
        Mapper {
            nics,
            rename,
            rename_requested: rename,
            by_len,
        }
    }

    /// The same map with names no longer rewritten: the guest already
    /// carries the target names (a second run; with swaps, renaming again
    /// would move the names once more).
    pub fn keeping_names(mut self) -> Mapper {
        self.rename = false;
        self
    }

    pub fn nics(&self) -> &[Nic] {
        &self.nics
    }

    /// Whether names are rewritten.
    pub fn renames(&self) -> bool {
        self.rename
    }

    /// The NICs whose name changes (empty when names are kept).
    pub fn renamed(&self) -> impl Iterator<Item = &Nic> {
        self.nics
            .iter()
            .filter(move |n| self.rename && n.source_name != n.target_name)
    }

    /// The target MAC of a source MAC.
    pub fn mac_for(&self, mac: MacAddr) -> Option<MacAddr> {
        self.nics
            .iter()
            .find(|n| n.source_mac == mac && n.source_mac != n.target_mac)
            .map(|n| n.target_mac)
    }

    /// The new name of an exact source name, when it changes.
    pub fn name_for(&self, name: &str) -> Option<&str> {
        self.renamed()
            .find(|n| n.source_name == name)
            .map(|n| n.target_name.as_str())
    }

    /// `text` with every source name (whole word) and source MAC replaced;
    /// `None` when nothing changes.
    pub fn words(&self, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut last = 0;
        self.scan(text, |start, end, token| match token {
            Token::Mac(mac) => {
                if let Some(target) = self.mac_for(mac) {
                    out.push_str(&text[last..start]);
                    out.push_str(&format_like(&text[start..end], target));
                    last = end;
                }
            }
            Token::Name(nic) => {
                let nic = &self.nics[nic];
                if self.rename && nic.source_name != nic.target_name {
                    out.push_str(&text[last..start]);
                    out.push_str(&nic.target_name);
                    last = end;
                }
            }
        });
        if last == 0 {
            return None;
        }
        out.push_str(&text[last..]);
        Some(out)
    }

    /// The source names and MACs still named in `text` that cannot be
    /// target references: names of renamed NICs that are no NIC's target
    /// name, MACs that are no NIC's target MAC.
    pub fn stale(&self, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        self.scan(text, |_, _, token| match token {
            Token::Mac(mac) => {
                let source = self.nics.iter().any(|n| n.source_mac == mac);
                let target = self.nics.iter().any(|n| n.target_mac == mac);
                if source && !target {
                    found.push(mac.to_string());
                }
            }
            Token::Name(i) => {
                let name = &self.nics[i].source_name;
                let is_target = self.nics.iter().any(|n| &n.target_name == name);
                if self.rename_requested && !is_target {
                    found.push(name.clone());
                }
            }
        });
        found
    }

    /// A note when a glob pattern (as it was, and as rewritten) matched a
    /// renamed NIC's source name but does not match its target name.
    pub fn glob_note(&self, before: &str, after: &str) -> Option<String> {
        if !is_glob(before) {
            return None;
        }
        let lost: Vec<String> = self
            .renamed()
            .filter(|n| {
                glob_match(before.as_bytes(), n.source_name.as_bytes())
                    && !glob_match(after.as_bytes(), n.target_name.as_bytes())
            })
            .map(|n| format!("{} (now {})", n.source_name, n.target_name))
            .collect();
        if lost.is_empty() {
            return None;
        }
        Some(format!(
            "the pattern '{before}' matched {} but not the new name; it is left as it is",
            lost.join(", ")
        ))
    }

    /// Calls `found(start, end, token)` for every name or MAC token.
    fn scan(&self, text: &str, mut found: impl FnMut(usize, usize, Token)) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let prev = i.checked_sub(1).and_then(|p| bytes.get(p)).copied();
            if prev.is_none_or(|p| !is_word(p)) {
                if let Some((len, mac)) = mac_at(text, i) {
                    found(i, i + len, Token::Mac(mac));
                    i += len;
                    continue;
                }
                if let Some(nic) = self.name_at(bytes, i) {
                    let len = self.nics[nic].source_name.len();
                    found(i, i + len, Token::Name(nic));
                    i += len;
                    continue;
                }
            }
            i += 1;
        }
    }

    fn name_at(&self, bytes: &[u8], i: usize) -> Option<usize> {
        let rest = bytes.get(i..)?;
        self.by_len.iter().copied().find(|&n| {
            let name = self.nics[n].source_name.as_bytes();
            !name.is_empty()
                && rest.starts_with(name)
                && rest.get(name.len()).is_none_or(|&b| !is_word(b))
        })
    }
}

enum Token {
    Mac(MacAddr),
    Name(usize),
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A MAC starting at `i`: 17 characters with separators, or 12 hex
/// digits, not part of a longer hex run.
fn mac_at(text: &str, i: usize) -> Option<(usize, MacAddr)> {
    let bytes = text.as_bytes();
    // After `xx:` (a lone hex pair and a separator) the MAC would be the
    // tail of a longer one; `mac:` or `ether-` are fine.
    if i >= 3
        && matches!(bytes.get(i - 1), Some(b':' | b'-'))
        && bytes
            .get(i - 3..i - 1)
            .is_some_and(|p| p.iter().all(u8::is_ascii_hexdigit))
        && (i == 3 || bytes.get(i - 4).is_some_and(|&b| !is_word(b)))
    {
        return None;
    }
    let ends_cleanly = |end: usize| match bytes.get(end) {
        None => true,
        Some(&b) if is_word(b) || b == b':' => false,
        Some(b'-') => !bytes.get(end + 1).is_some_and(u8::is_ascii_hexdigit),
        Some(_) => true,
    };
    if let Some(mac) = text.get(i..i + 17).and_then(|t| t.parse::<MacAddr>().ok())
        && ends_cleanly(i + 17)
    {
        return Some((17, mac));
    }
    let compact = bytes.get(i..i + 12)?;
    if compact.iter().all(u8::is_ascii_hexdigit) && ends_cleanly(i + 12) {
        let mut octets = [0u8; 6];
        for (o, pair) in octets.iter_mut().zip(compact.chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *o = u8::from_str_radix(pair, 16).ok()?;
        }
        return Some((12, MacAddr(octets)));
    }
    None
}

/// `mac` written like `original`: same separator (or none), same case.
pub fn format_like(original: &str, mac: MacAddr) -> String {
    let upper = original.bytes().any(|b| b.is_ascii_uppercase());
    let sep = match original.as_bytes().get(2) {
        Some(b':') => ":",
        Some(b'-') => "-",
        _ => "",
    };
    let parts: Vec<String> = mac
        .octets()
        .iter()
        .map(|o| {
            if upper {
                format!("{o:02X}")
            } else {
                format!("{o:02x}")
            }
        })
        .collect();
    parts.join(sep)
}

/// Whether `s` holds glob characters.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style matching of `*`, `?` and `[...]` (with `!` or `^`
/// negation and ranges).
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    match pattern.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => {
            (0..=s.len()).any(|k| s.get(k..).is_some_and(|t| glob_match(rest, t)))
        }
        Some((b'?', rest)) => s.split_first().is_some_and(|(_, t)| glob_match(rest, t)),
        Some((b'[', rest)) => {
            let Some((&c, t)) = s.split_first() else {
                return false;
            };
            let (negate, body) = match rest.split_first() {
                Some((b'!' | b'^', body)) => (true, body),
                _ => (false, rest),
            };
            // The class ends at the first `]` after its first character.
            let Some(close) = body.iter().skip(1).position(|&b| b == b']').map(|p| p + 1) else {
                // No closing bracket: a literal `[`.
                return c == b'[' && glob_match(rest, t);
            };
            let class = &body[..close];
            let mut hit = false;
            let mut k = 0;
            while k < class.len() {
                if class.get(k + 1) == Some(&b'-') && k + 2 < class.len() {
                    if class[k] <= c && c <= class[k + 2] {
                        hit = true;
                    }
                    k += 3;
                } else {
                    if class[k] == c {
                        hit = true;
                    }
                    k += 1;
                }
            }
            hit != negate && glob_match(&body[close + 1..], t)
        }
        Some((&p, rest)) => s
            .split_first()
            .is_some_and(|(&c, t)| c == p && glob_match(rest, t)),
    }
}

/// Calls `f(line_number, line)` for every line (without its end of line)
/// and rebuilds the text from what it returns (`None`: unchanged). Gives
/// `None` when no line changed.
pub fn map_lines(text: &str, mut f: impl FnMut(usize, &str) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (body, eol) = split_eol(line);
        match f(n + 1, body) {
            Some(new) if new != body => {
                changed = true;
                out.push_str(&new);
                out.push_str(eol);
            }
            _ => out.push_str(line),
        }
    }
    changed.then_some(out)
}

/// A line and its end of line (`\n`, `\r\n` or nothing).
pub fn split_eol(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

/// The stale references of the lines for which `live` holds.
pub fn stale_lines(text: &str, m: &Mapper, live: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if live(line) {
            out.extend(m.stale(line).into_iter().map(|s| (n + 1, s)));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn mac(s: &str) -> MacAddr {
        s.parse().expect("test MAC")
    }

    pub fn nic(source: &str, smac: &str, target: &str, tmac: &str) -> Nic {
        Nic {
            source_name: source.into(),
            source_mac: mac(smac),
            target_name: target.into(),
            target_mac: mac(tmac),
        }
    }

    /// ens192 → eth0, ens224 → eth1.
    pub fn two() -> Mapper {
        Mapper::new(
            vec![
                nic("ens192", "52:54:00:12:34:56", "eth0", "00:50:56:9a:00:01"),
                nic("ens224", "52:54:00:12:34:57", "eth1", "00:50:56:9a:00:02"),
            ],
            true,
        )
    }

    /// A swap: ens192 → eth1 while eth1 → eth0.
    pub fn swap() -> Mapper {
        Mapper::new(
            vec![
                nic("eth1", "52:54:00:00:00:01", "eth0", "00:50:56:9a:00:01"),
                nic("ens192", "52:54:00:00:00:02", "eth1", "00:50:56:9a:00:02"),
            ],
            true,
        )
    }

    #[test]
    fn words_match_whole_names_and_macs_in_one_pass() {
        let m = two();
        let cases: &[(&str, Option<&str>)] = &[
            ("DEVICE=ens192", Some("DEVICE=eth0")),
            ("DEVICE=\"ens192\"", Some("DEVICE=\"eth0\"")),
            ("DEVICE=ens19", None),
            ("DEVICE=ens1920", None),
            ("DEVICE=xens192", None),
            ("DEVICE=ens192.100", Some("DEVICE=eth0.100")),
            ("ifcfg-ens192:0", Some("ifcfg-eth0:0")),
            ("bond-slaves ens192 ens224", Some("bond-slaves eth0 eth1")),
            (
                "interfaces: [ens192,ens224]",
                Some("interfaces: [eth0,eth1]"),
            ),
            ("HWADDR=52:54:00:12:34:56", Some("HWADDR=00:50:56:9a:00:01")),
            ("HWADDR=52:54:00:12:34:5A", None),
            (
                "HWADDR=\"52:54:00:12:34:56\"",
                Some("HWADDR=\"00:50:56:9a:00:01\""),
            ),
            (
                "mac-address=52:54:00:12:34:57",
                Some("mac-address=00:50:56:9a:00:02"),
            ),
            (
                "MACADDR=52-54-00-12-34-56",
                Some("MACADDR=00-50-56-9a-00-01"),
            ),
            ("x=525400123456", Some("x=0050569a0001")),
            ("x=52:54:00:12:34:56:78", None),
            ("x=aa:52:54:00:12:34:56", None),
            ("mac:52:54:00:12:34:56", Some("mac:00:50:56:9a:00:01")),
            ("# nothing here", None),
            ("ünïcode ens192 ✓", Some("ünïcode eth0 ✓")),
        ];
        for (input, want) in cases {
            assert_eq!(m.words(input).as_deref(), *want, "{input}");
        }
        assert_eq!(
            m.words("ATTR{address}==\"52:54:00:12:34:56\"").as_deref(),
            Some("ATTR{address}==\"00:50:56:9a:00:01\"")
        );
        assert_eq!(
            m.words("mac-address=52:54:00:12:34:56").as_deref(),
            Some("mac-address=00:50:56:9a:00:01")
        );
        assert_eq!(
            m.words("HWADDR=52:54:00:AB:CD:EF"),
            None,
            "a MAC not in the map stays"
        );
        let upper = Mapper::new(
            vec![nic(
                "ens192",
                "52:54:00:AB:CD:EF",
                "eth0",
                "00:50:56:9a:0b:01",
            )],
            true,
        );
        assert_eq!(
            upper.words("HWADDR=52:54:00:AB:CD:EF").as_deref(),
            Some("HWADDR=00:50:56:9A:0B:01")
        );
        assert_eq!(
            upper.words("HWADDR=52:54:00:ab:cd:ef").as_deref(),
            Some("HWADDR=00:50:56:9a:0b:01")
        );
    }

    #[test]
    fn swaps_never_collide() {
        let m = swap();
        assert_eq!(
            m.words("eth1 ens192 eth1.10 eth0").as_deref(),
            Some("eth0 eth1 eth0.10 eth0")
        );
        // Stale: ens192 is no target, eth1 is one.
        assert_eq!(m.stale("eth1 ens192"), vec!["ens192"]);
    }

    #[test]
    fn names_are_kept_without_rename() {
        let m = Mapper::new(two().nics().to_vec(), false);
        assert_eq!(m.words("DEVICE=ens192"), None);
        assert_eq!(
            m.words("DEVICE=ens192 HWADDR=52:54:00:12:34:56").as_deref(),
            Some("DEVICE=ens192 HWADDR=00:50:56:9a:00:01")
        );
        assert!(m.stale("DEVICE=ens192").is_empty());
        assert_eq!(
            m.stale("HWADDR=52-54-00-12-34-56"),
            vec!["52:54:00:12:34:56"]
        );
    }

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("ens*", "ens192", true),
            ("ens*", "eth0", false),
            ("en?192", "ens192", true),
            ("ens[0-9]*", "ens192", true),
            ("ens[!0-9]*", "ens192", false),
            ("eth[01]", "eth1", true),
            ("*", "", true),
            ("e*0", "eth0", true),
            ("[", "[", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), *want, "{p} {s}");
        }
        let m = two();
        assert!(m.glob_note("ens*", "ens*").is_some());
        assert!(m.glob_note("e*", "e*").is_none());
        assert!(m.glob_note("ens192", "eth0").is_none());
    }

    #[test]
    fn map_lines_keeps_line_ends() {
        let text = "a ens192\r\nb\nc ens224";
        let out = map_lines(text, |_, l| two().words(l));
        assert_eq!(out.as_deref(), Some("a eth0\r\nb\nc eth1"));
        assert_eq!(map_lines("x\n", |_, _| None), None);
    }
}
