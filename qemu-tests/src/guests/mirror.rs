//! The Debian archive mirror the guests come from: the one this machine's
//! apt uses for Debian (`/etc/apt/sources.list`, `sources.list.d/*.list`
//! and `*.sources`), or `OSAM_DEBIAN_MIRROR`.

use std::fs;
use std::path::Path;

use anyhow::{Result, bail};

/// Overrides the mirror.
pub const MIRROR_VAR: &str = "OSAM_DEBIAN_MIRROR";

/// A `deb` source: its URI and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The archive's URI.
    pub uri: String,
    /// Its suites.
    pub suites: Vec<String>,
}

/// The `deb` sources of a one-line-style list (`deb [opts] uri suite comp…`).
pub fn parse_list(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = match line.strip_prefix("deb ") {
            Some(r) => r.trim_start(),
            None => continue,
        };
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(Source {
                uri: uri.to_owned(),
                suites: vec![suite.to_owned()],
            });
        }
    }
    out
}

/// The `deb` sources of a deb822 `.sources` file (`Enabled: no` skipped).
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(char::is_whitespace) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = || {
                value
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "enabled" => enabled = value.trim() != "no",
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in uris {
                out.push(Source {
                    uri,
                    suites: suites.clone(),
                });
            }
        }
    }
    out
}

/// The first source serving `suite` itself (not `-updates`/`-security`).
pub fn pick(sources: &[Source], suite: &str) -> Option<String> {
    sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == suite))
        .map(|s| s.uri.trim_end_matches('/').to_owned())
}

/// This machine's apt sources.
pub fn host_sources() -> Vec<Source> {
    let mut sources = Vec::new();
    let mut read = |path: &Path| {
        let Ok(text) = fs::read_to_string(path) else {
            return;
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ => sources.extend(parse_list(&text)),
        }
    };
    read(Path::new("/etc/apt/sources.list"));
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("list" | "sources")
            ) {
                read(&path);
            }
        }
    }
    sources
}

/// The mirror for `suite`: `$OSAM_DEBIAN_MIRROR`, else the host's apt
/// source that serves `suite`.
pub fn host_mirror(suite: &str) -> Result<String> {
    if let Some(m) = std::env::var_os(MIRROR_VAR).filter(|v| !v.is_empty()) {
        return Ok(m.to_string_lossy().trim_end_matches('/').to_owned());
    }
    match pick(&host_sources(), suite) {
        Some(uri) => Ok(uri),
        None => bail!(
            "no apt source of this machine serves the suite {suite} \
             (/etc/apt/sources.list*): set {MIRROR_VAR}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_formats() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n\n\
                      Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
                      Types: deb\nEnabled: no\nURIs: http://off.example/\nSuites: bookworm\n";
        let s = parse_deb822(deb822);
        assert_eq!(s.len(), 2);
        assert_eq!(
            pick(&s, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let list = "# x\ndeb-src http://a/ bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n\
                    deb http://security/ bookworm-security main\n";
        let s = parse_list(list);
        assert_eq!(s.len(), 2);
        assert_eq!(
            pick(&s, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(pick(&s, "trixie"), None);
    }
}
