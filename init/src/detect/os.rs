//! Which distribution and version the guest is: os-release first, then the
//! older release files, most authoritative first. The parsers are pure
//! functions of the files' text.

use std::collections::BTreeMap;

use super::OsFamily;
use crate::error::{FixupError, Warning, codes};
use crate::guestfs::GuestRoot;

/// Release files are small: anything larger is not one.
pub const MAX_RELEASE_FILE_BYTES: u64 = 64 * 1024;

/// What a release file says about the operating system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsIdentity {
    /// os-release style `ID` (lowercase).
    pub id: String,
    pub version: String,
    pub pretty_name: String,
    pub family: OsFamily,
    /// The guest file it came from.
    pub source: &'static str,
}

type Parser = fn(&str) -> Option<Parsed>;

/// What one parser extracts (the family is derived afterwards).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub id: String,
    pub id_like: Vec<String>,
    pub version: String,
    pub pretty_name: String,
}

/// The files looked at, in order of authority, with their parsers.
/// `/etc/oracle-release` and `/etc/enterprise-release` come before
/// `/etc/redhat-release`, which Oracle Linux 5/6 fill with Red Hat's text.
pub const RELEASE_FILES: &[(&str, Parser)] = &[
    ("/etc/os-release", parse_os_release_identity),
    ("/usr/lib/os-release", parse_os_release_identity),
    ("/etc/oracle-release", parse_redhat_release),
    ("/etc/enterprise-release", parse_redhat_release),
    ("/etc/redhat-release", parse_redhat_release),
    ("/etc/system-release", parse_redhat_release),
    ("/etc/SuSE-release", parse_suse_release),
    ("/etc/lsb-release", parse_lsb_release),
    ("/etc/debian_version", parse_debian_version),
    ("/etc/photon-release", parse_photon_release),
];

/// Identifies the guest's operating system from its release files.
/// Unreadable files (FIFOs, huge files, I/O errors) are warnings and the
/// next file is tried; when none identifies the system, the error names
/// every file and what was wrong with it.
pub fn detect_os(root: &GuestRoot, warnings: &mut Vec<Warning>) -> Result<OsIdentity, FixupError> {
    let mut tried = Vec::new();
    for &(path, parse) in RELEASE_FILES {
        let text = match root.read_to_string_lossy(path, MAX_RELEASE_FILE_BYTES) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.push(format!("{path}: missing"));
                continue;
            }
            Err(e) => {
                warnings.push(Warning::new(
                    codes::GUEST_IO,
                    format!("cannot read the guest's {path}, ignoring it: {e}"),
                ));
                tried.push(format!("{e}"));
                continue;
            }
        };
        let Some(parsed) = parse(&text) else {
            warnings.push(Warning::new(
                codes::GUEST_UNKNOWN_OS,
                format!("the guest's {path} does not name an operating system, ignoring it"),
            ));
            tried.push(format!("{path}: not recognised"));
            continue;
        };
        let mut identity = OsIdentity {
            family: family_of(&parsed.id, &parsed.id_like),
            id: parsed.id,
            version: parsed.version,
            pretty_name: parsed.pretty_name,
            source: path,
        };
        refine(root, &mut identity);
        return Ok(identity);
    }
    let names: Vec<&str> = RELEASE_FILES.iter().map(|(p, _)| *p).collect();
    Err(FixupError::new(
        codes::GUEST_UNKNOWN_OS,
        format!(
            "no operating system found under {}: none of {} identifies one",
            root.root_path().display(),
            names.join(", ")
        ),
    )
    .with_detail(tried.join("\n")))
}

/// Fills gaps of a found identity from the other files: Debian testing's
/// os-release has no `VERSION_ID` (debian_version has one).
fn refine(root: &GuestRoot, identity: &mut OsIdentity) {
    if identity.id == "debian" && identity.version.is_empty() {
        let from_file = root
            .read_to_string_lossy("/etc/debian_version", MAX_RELEASE_FILE_BYTES)
            .ok()
            .and_then(|text| parse_debian_version(&text));
        if let Some(p) = from_file {
            identity.version = p.version;
        }
    }
    if identity.pretty_name.is_empty() {
        identity.pretty_name = format!("{} {}", identity.id, identity.version)
            .trim()
            .to_string();
    }
}

/// The family of an os-release `ID`, or else of the first `ID_LIKE` entry
/// that has one.
pub fn family_of(id: &str, id_like: &[String]) -> OsFamily {
    std::iter::once(id)
        .chain(id_like.iter().map(String::as_str))
        .map(family_of_id)
        .find(|f| *f != OsFamily::Unknown)
        .unwrap_or(OsFamily::Unknown)
}

fn family_of_id(id: &str) -> OsFamily {
    match id {
        "rhel" | "centos" | "rocky" | "almalinux" | "ol" | "amzn" | "fedora" | "scientific"
        | "cloudlinux" | "eurolinux" | "virtuozzo" | "circle" | "navy" | "redhat" => OsFamily::Rhel,
        "sles"
        | "sled"
        | "sles_sap"
        | "suse"
        | "opensuse"
        | "opensuse-leap"
        | "opensuse-tumbleweed"
        | "opensuse-microos"
        | "sle-micro" => OsFamily::Suse,
        "debian" | "ubuntu" | "linuxmint" | "raspbian" | "devuan" | "kali" | "pop" => {
            OsFamily::Debian
        }
        "photon" => OsFamily::Photon,
        _ => OsFamily::Unknown,
    }
}

/// Parses os-release(5) text: `KEY=value` lines whose values follow shell
/// quoting (double quotes with `\` escapes, single quotes, bare words with
/// `\` escapes); comments and malformed lines are skipped, a later
/// assignment wins.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim_end();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            continue;
        }
        vars.insert(key.to_string(), shell_word(raw));
    }
    vars
}

/// The value of one shell word: quotes removed, escapes applied, ending at
/// the first unquoted blank (what follows, e.g. a comment, is ignored).
fn shell_word(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('$' | '"' | '\\' | '`')) => out.push(e),
                            Some(e) => {
                                out.push('\\');
                                out.push(e);
                            }
                            None => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '\\' => {
                if let Some(e) = chars.next() {
                    out.push(e);
                }
            }
            c if c.is_whitespace() => break,
            c => out.push(c),
        }
    }
    out
}

/// An identity from os-release text (`ID`, `ID_LIKE`, `VERSION_ID`,
/// `PRETTY_NAME`); `None` when it has neither `ID` nor `NAME`.
pub fn parse_os_release_identity(text: &str) -> Option<Parsed> {
    let vars = parse_os_release(text);
    let get = |k: &str| {
        vars.get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let name = get("NAME");
    let mut id = get("ID").to_ascii_lowercase();
    if id.is_empty() {
        if name.is_empty() {
            return None;
        }
        // os-release(5): ID defaults to "linux"; try the name first.
        id = id_from_name(&name).unwrap_or("linux").to_string();
    }
    let mut pretty_name = get("PRETTY_NAME");
    if pretty_name.is_empty() {
        pretty_name = format!("{} {}", name, get("VERSION")).trim().to_string();
    }
    Some(Parsed {
        id,
        id_like: get("ID_LIKE")
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect(),
        version: get("VERSION_ID"),
        pretty_name,
    })
}

/// The os-release `ID` of a distribution's long name, as written in
/// `/etc/redhat-release` and friends.
fn id_from_name(name: &str) -> Option<&'static str> {
    const NAMES: &[(&str, &str)] = &[
        ("red hat enterprise linux", "rhel"),
        ("red hat linux", "rhel"),
        ("centos", "centos"),
        ("rocky linux", "rocky"),
        ("almalinux", "almalinux"),
        ("oracle linux", "ol"),
        ("enterprise linux enterprise linux", "ol"),
        ("scientific linux", "scientific"),
        ("cloudlinux", "cloudlinux"),
        ("eurolinux", "eurolinux"),
        ("virtuozzo", "virtuozzo"),
        ("amazon linux", "amzn"),
        ("fedora", "fedora"),
        ("opensuse", "opensuse"),
        ("suse linux enterprise server", "sles"),
        ("suse linux enterprise desktop", "sled"),
        ("sles", "sles"),
        ("ubuntu", "ubuntu"),
        ("debian", "debian"),
        ("vmware photon", "photon"),
    ];
    let lower = name.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(_, id)| *id)
}

/// The first token that starts with a digit, cut to its leading
/// digits-and-dots part ("6.10", "2018.03", "7.9.2009").
fn leading_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .map(|t| {
            t.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect::<String>()
                .trim_end_matches('.')
                .to_string()
        })
}

/// `/etc/redhat-release`, `/etc/system-release`, `/etc/oracle-release`:
/// "Red Hat Enterprise Linux Server release 6.10 (Santiago)" → rhel 6.10;
/// "CentOS release 6.10 (Final)" → centos 6.10;
/// "Red Hat Enterprise Linux AS release 4 (Nahant Update 9)" → rhel 4.9.
pub fn parse_redhat_release(text: &str) -> Option<Parsed> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let lower = line.to_ascii_lowercase();
    let at = lower.find(" release ")?;
    let name = line.get(..at)?;
    let rest = line.get(at + " release ".len()..)?;
    let mut version = leading_version(rest)?;
    if version.is_empty() {
        return None;
    }
    if !version.contains('.') {
        // RHEL 3/4: "(Nahant Update 9)".
        let update = rest
            .split_once("Update ")
            .and_then(|(_, u)| leading_version(u))
            .filter(|u| !u.is_empty() && !u.contains('.'));
        if let Some(update) = update {
            version = format!("{version}.{update}");
        }
    }
    let id = match id_from_name(name) {
        Some(id) => id.to_string(),
        None => {
            // Another Red Hat rebuild: name it by its first word; the file
            // itself makes it one of the family.
            let first = name.split_whitespace().next()?.to_ascii_lowercase();
            return Some(Parsed {
                id: first,
                id_like: vec!["rhel".to_string()],
                version,
                pretty_name: line.to_string(),
            });
        }
    };
    Some(Parsed {
        id,
        id_like: Vec::new(),
        version,
        pretty_name: line.to_string(),
    })
}

/// `/etc/SuSE-release` (SLES 10/11, openSUSE ≤ 13):
/// "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4"
/// → sles 11.4.
pub fn parse_suse_release(text: &str) -> Option<Parsed> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next()?;
    let mut version = String::new();
    let mut patchlevel = String::new();
    for line in lines {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "VERSION" => version = v.trim().to_string(),
            "PATCHLEVEL" => patchlevel = v.trim().to_string(),
            _ => {}
        }
    }
    if version.is_empty() {
        version = leading_version(first).unwrap_or_default();
    }
    if !patchlevel.is_empty() && patchlevel != "0" && !version.contains('.') {
        version = format!("{version}.{patchlevel}");
    }
    let id = match id_from_name(first) {
        Some(id) => id,
        None if first.to_ascii_lowercase().contains("suse") => "suse",
        None => return None,
    };
    Some(Parsed {
        id: id.to_string(),
        id_like: vec!["suse".to_string()],
        version,
        pretty_name: first.to_string(),
    })
}

/// `/etc/lsb-release`: `DISTRIB_ID`, `DISTRIB_RELEASE`,
/// `DISTRIB_DESCRIPTION` (RHEL's, with only `LSB_VERSION`, names nothing).
pub fn parse_lsb_release(text: &str) -> Option<Parsed> {
    let vars = parse_os_release(text);
    let distrib_id = vars.get("DISTRIB_ID")?.trim();
    if distrib_id.is_empty() {
        return None;
    }
    let id = id_from_name(distrib_id)
        .map(str::to_string)
        .unwrap_or_else(|| distrib_id.to_ascii_lowercase().replace(' ', ""));
    let version = vars
        .get("DISTRIB_RELEASE")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let pretty_name = vars
        .get("DISTRIB_DESCRIPTION")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{distrib_id} {version}").trim().to_string());
    Some(Parsed {
        id,
        id_like: Vec::new(),
        version,
        pretty_name,
    })
}

/// `/etc/debian_version`: "9.13" → debian 9.13 ("Debian GNU/Linux 9.13").
pub fn parse_debian_version(text: &str) -> Option<Parsed> {
    let version = text.lines().next()?.trim();
    if version.is_empty() || version.len() > 64 || version.contains(char::is_whitespace) {
        return None;
    }
    Some(Parsed {
        id: "debian".to_string(),
        id_like: Vec::new(),
        version: version.to_string(),
        pretty_name: format!("Debian GNU/Linux {version}"),
    })
}

/// `/etc/photon-release`: "VMware Photon OS 4.0\nPHOTON_BUILD_NUMBER=…".
pub fn parse_photon_release(text: &str) -> Option<Parsed> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    if !first.to_ascii_lowercase().contains("photon") {
        return None;
    }
    Some(Parsed {
        id: "photon".to_string(),
        id_like: Vec::new(),
        version: leading_version(first).unwrap_or_default(),
        pretty_name: first.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quoting() {
        let text = "# a comment\n\
                    NAME=\"Red Hat Enterprise Linux\"\n\
                    ID=rhel\n\
                    ID_LIKE='fedora'\n\
                    VERSION_ID=\"8.6\" # trailing comment\n\
                    PRETTY_NAME=\"Say \\\"hi\\\" \\$HOME \\\\ \\n\"\n\
                    BARE=a\\ b\n\
                    CONCAT=\"a\"'b'c\n\
                    EMPTY=\n\
                    \x20  INDENTED=yes\r\n\
                    export EXPORTED=1\n\
                    1BAD=x\n\
                    BAD-KEY=x\n\
                    no equals here\n\
                    UNTERMINATED=\"abc\n\
                    ID=rhel-again\n";
        let v = parse_os_release(text);
        assert_eq!(v["NAME"], "Red Hat Enterprise Linux");
        assert_eq!(v["ID"], "rhel-again");
        assert_eq!(v["ID_LIKE"], "fedora");
        assert_eq!(v["VERSION_ID"], "8.6");
        assert_eq!(v["PRETTY_NAME"], "Say \"hi\" $HOME \\ \\n");
        assert_eq!(v["BARE"], "a b");
        assert_eq!(v["CONCAT"], "abc");
        assert_eq!(v["EMPTY"], "");
        assert_eq!(v["INDENTED"], "yes");
        assert_eq!(v["EXPORTED"], "1");
        assert_eq!(v["UNTERMINATED"], "abc");
        assert!(!v.contains_key("1BAD"));
        assert!(!v.contains_key("BAD-KEY"));
    }

    #[test]
    fn os_release_identity() {
        let p = parse_os_release_identity(
            "NAME=\"Amazon Linux\"\nVERSION=\"2\"\nID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\n\
             VERSION_ID=\"2\"\nPRETTY_NAME=\"Amazon Linux 2\"\n",
        )
        .unwrap();
        assert_eq!(p.id, "amzn");
        assert_eq!(p.id_like, ["centos", "rhel", "fedora"]);
        assert_eq!(family_of(&p.id, &p.id_like), OsFamily::Rhel);
        // No ID: from the name, else "linux".
        let p = parse_os_release_identity("NAME=\"Ubuntu\"\nVERSION=\"14.04\"").unwrap();
        assert_eq!(
            (p.id.as_str(), p.pretty_name.as_str()),
            ("ubuntu", "Ubuntu 14.04")
        );
        assert_eq!(parse_os_release_identity("NAME=Foo").unwrap().id, "linux");
        assert_eq!(
            parse_os_release_identity("root:x:0:0::/root:/bin/sh\n"),
            None
        );
        assert_eq!(parse_os_release_identity("\u{fffd}\u{fffd}\0garbage"), None);
        assert_eq!(
            family_of("linuxmint", &["ubuntu".into(), "debian".into()]),
            OsFamily::Debian
        );
        assert_eq!(family_of("weird", &["alsoweird".into()]), OsFamily::Unknown);
        assert_eq!(family_of("opensuse-leap", &[]), OsFamily::Suse);
    }

    #[test]
    fn redhat_release_lines() {
        let cases = [
            (
                "Red Hat Enterprise Linux Server release 6.10 (Santiago)\n",
                "rhel",
                "6.10",
            ),
            ("CentOS release 6.10 (Final)", "centos", "6.10"),
            ("CentOS Linux release 7.9.2009 (Core)", "centos", "7.9.2009"),
            (
                "Red Hat Enterprise Linux Server release 5.11 (Tikanga)",
                "rhel",
                "5.11",
            ),
            (
                "Red Hat Enterprise Linux AS release 4 (Nahant Update 9)",
                "rhel",
                "4.9",
            ),
            ("Oracle Linux Server release 6.10", "ol", "6.10"),
            (
                "Enterprise Linux Enterprise Linux Server release 5.11 (Carthage)",
                "ol",
                "5.11",
            ),
            (
                "Scientific Linux release 6.10 (Carbon)",
                "scientific",
                "6.10",
            ),
            ("Amazon Linux AMI release 2018.03", "amzn", "2018.03"),
            ("Fedora release 20 (Heisenbug)", "fedora", "20"),
            ("Rocky Linux release 9.3 (Blue Onyx)", "rocky", "9.3"),
            ("MyRebuild release 7.1 (X)", "myrebuild", "7.1"),
        ];
        for (text, id, version) in cases {
            let p = parse_redhat_release(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((p.id.as_str(), p.version.as_str()), (id, version), "{text}");
            assert_eq!(family_of(&p.id, &p.id_like), OsFamily::Rhel, "{text}");
            assert_eq!(p.pretty_name, text.trim());
        }
        for bad in ["", "\n\n", "garbage", "release", "Foo release x", "\0\0\0"] {
            assert_eq!(parse_redhat_release(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn suse_release() {
        let p = parse_suse_release(
            "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n",
        )
        .unwrap();
        assert_eq!((p.id.as_str(), p.version.as_str()), ("sles", "11.4"));
        assert_eq!(p.pretty_name, "SUSE Linux Enterprise Server 11 (x86_64)");
        let p = parse_suse_release(
            "SUSE Linux Enterprise Server 12 (x86_64)\nVERSION = 12\nPATCHLEVEL = 0\n",
        )
        .unwrap();
        assert_eq!(p.version, "12");
        let p =
            parse_suse_release("openSUSE 13.2 (x86_64)\nVERSION = 13.2\nCODENAME = Harlequin\n")
                .unwrap();
        assert_eq!((p.id.as_str(), p.version.as_str()), ("opensuse", "13.2"));
        assert_eq!(parse_suse_release("Hello\nVERSION = 1"), None);
    }

    #[test]
    fn lsb_debian_photon() {
        let p = parse_lsb_release(
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=14.04\nDISTRIB_CODENAME=trusty\n\
             DISTRIB_DESCRIPTION=\"Ubuntu 14.04.6 LTS\"\n",
        )
        .unwrap();
        assert_eq!(
            (p.id.as_str(), p.version.as_str(), p.pretty_name.as_str()),
            ("ubuntu", "14.04", "Ubuntu 14.04.6 LTS")
        );
        assert_eq!(
            parse_lsb_release("LSB_VERSION=base-4.0-amd64:core-4.0-amd64\n"),
            None
        );
        let p = parse_debian_version("9.13\n").unwrap();
        assert_eq!(
            (p.version.as_str(), p.pretty_name.as_str()),
            ("9.13", "Debian GNU/Linux 9.13")
        );
        assert_eq!(
            parse_debian_version("stretch/sid").unwrap().version,
            "stretch/sid"
        );
        assert_eq!(parse_debian_version("\n"), None);
        assert_eq!(parse_debian_version("a b c"), None);
        let p =
            parse_photon_release("VMware Photon OS 4.0\nPHOTON_BUILD_NUMBER=1526e30ba\n").unwrap();
        assert_eq!((p.id.as_str(), p.version.as_str()), ("photon", "4.0"));
        assert_eq!(parse_photon_release("something else"), None);
    }
}
