//! The `osam.*` kernel command-line options (PROTOCOL.md, "Kernel command
//! line"). Parsing is pure; unknown `osam.*` options and bad values are
//! reported as warnings and the default is kept, so a typo at the GRUB
//! prompt never stops the stack.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `9p:fixup` when that share is present, else `vmtools` on VMware,
    /// else `disk`.
    Auto,
    Vmtools,
    NineP(String),
    Disk,
}

impl Transport {
    pub fn as_string(&self) -> String {
        match self {
            Transport::Auto => "auto".into(),
            Transport::Vmtools => "vmtools".into(),
            Transport::NineP(tag) => format!("9p:{tag}"),
            Transport::Disk => "disk".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The protocol: wait for BEGIN, fix, report.
    Auto,
    /// Guest mounted read-only, shell on the console.
    Rescue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Wait for the manager's power-off.
    Wait,
    Poweroff,
    Shell,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub transport: Transport,
    pub mode: Mode,
    pub after: After,
    pub verbose: bool,
    /// `None` waits for ever (`osam.begin_timeout=0`).
    pub begin_timeout: Option<Duration>,
    /// The GPT disk GUID of the fixup disk, passed by GRUB.
    pub disk: Option<String>,
    /// Seconds to wait for replica disks to appear (`osam.disk_timeout=`).
    pub disk_timeout: Duration,
    /// Problems found while parsing, to be logged.
    pub warnings: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transport: Transport::Auto,
            mode: Mode::Auto,
            after: After::Wait,
            verbose: false,
            begin_timeout: None,
            disk: None,
            disk_timeout: Duration::from_secs(30),
            warnings: Vec::new(),
        }
    }
}

/// Splits a kernel command line into words the way the kernel does:
/// white space separates, double quotes group (and are removed).
pub fn split_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        words.push(cur);
    }
    words
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 31
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Parses the `osam.*` options of a kernel command line; the last
/// occurrence of an option wins, as with the kernel's own options.
pub fn parse(cmdline: &str) -> Options {
    let mut o = Options::default();
    for word in split_words(cmdline) {
        let Some(rest) = word.strip_prefix("osam.") else {
            continue;
        };
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k, v),
            None => (rest, ""),
        };
        let bad = |expected: &str| format!("ignoring `{word}`: expected {expected}");
        match key {
            "transport" => match value {
                "auto" => o.transport = Transport::Auto,
                "vmtools" => o.transport = Transport::Vmtools,
                "disk" => o.transport = Transport::Disk,
                v if v.starts_with("9p:") && valid_tag(&v[3..]) => {
                    o.transport = Transport::NineP(v[3..].to_string())
                }
                _ => o.warnings.push(bad("auto, vmtools, disk or 9p:<tag>")),
            },
            "mode" => match value {
                "auto" => o.mode = Mode::Auto,
                "rescue" => o.mode = Mode::Rescue,
                _ => o.warnings.push(bad("auto or rescue")),
            },
            "after" => match value {
                "wait" => o.after = After::Wait,
                "poweroff" => o.after = After::Poweroff,
                "shell" => o.after = After::Shell,
                _ => o.warnings.push(bad("wait, poweroff or shell")),
            },
            "verbose" => match value {
                "0" => o.verbose = false,
                "1" | "" => o.verbose = true,
                _ => o.warnings.push(bad("0 or 1")),
            },
            "begin_timeout" => match value.parse::<u64>() {
                Ok(0) => o.begin_timeout = None,
                Ok(s) => o.begin_timeout = Some(Duration::from_secs(s)),
                Err(_) => o.warnings.push(bad("a number of seconds (0 for ever)")),
            },
            "disk_timeout" => match value.parse::<u64>() {
                Ok(s) if s <= 3600 => o.disk_timeout = Duration::from_secs(s),
                _ => o.warnings.push(bad("a number of seconds up to 3600")),
            },
            "disk" => {
                let guid = value.to_ascii_lowercase();
                if is_guid(&guid) {
                    o.disk = Some(guid);
                } else {
                    o.warnings.push(bad("a GPT disk GUID"));
                }
            }
            _ => o.warnings.push(format!("ignoring unknown option `{word}`")),
        }
    }
    o
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_options() {
        let o = parse("BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet");
        assert_eq!(o, Options::default());
    }

    type Check = fn(&Options) -> bool;

    #[test]
    fn table() {
        let cases: &[(&str, Check)] = &[
            ("osam.transport=9p:fixup", |o| {
                o.transport == Transport::NineP("fixup".into())
            }),
            ("osam.transport=vmtools", |o| {
                o.transport == Transport::Vmtools
            }),
            ("osam.transport=disk", |o| o.transport == Transport::Disk),
            ("osam.transport=9p:", |o| {
                o.transport == Transport::Auto && o.warnings.len() == 1
            }),
            ("osam.transport=9p:a/b", |o| o.transport == Transport::Auto),
            ("osam.mode=rescue", |o| o.mode == Mode::Rescue),
            ("osam.mode=bogus", |o| {
                o.mode == Mode::Auto && !o.warnings.is_empty()
            }),
            ("osam.after=poweroff", |o| o.after == After::Poweroff),
            ("osam.after=shell", |o| o.after == After::Shell),
            ("osam.verbose=1", |o| o.verbose),
            ("osam.verbose=1 osam.verbose=0", |o| !o.verbose),
            ("osam.begin_timeout=0", |o| o.begin_timeout.is_none()),
            ("osam.begin_timeout=30", |o| {
                o.begin_timeout == Some(Duration::from_secs(30))
            }),
            ("osam.begin_timeout=-1", |o| {
                o.begin_timeout.is_none() && o.warnings.len() == 1
            }),
            ("osam.disk=0FC63DAF-8483-4772-8E79-3D69D8477DE4", |o| {
                o.disk.as_deref() == Some("0fc63daf-8483-4772-8e79-3d69d8477de4")
            }),
            ("osam.disk=nope", |o| {
                o.disk.is_none() && o.warnings.len() == 1
            }),
            ("osam.frobnicate=1", |o| o.warnings.len() == 1),
            ("\"osam.transport=9p:fixup\" x", |o| {
                o.transport == Transport::NineP("fixup".into())
            }),
        ];
        for (line, check) in cases {
            let o = parse(line);
            assert!(check(&o), "{line}: {o:?}");
        }
    }

    #[test]
    fn split_words_handles_quotes() {
        assert_eq!(
            split_words(" a  b=\"c d\" e\n"),
            vec!["a".to_string(), "b=c d".to_string(), "e".to_string()]
        );
    }
}
