//! `image/pins.txt`: the pinned Debian packages the stack is built from,
//! one `<debian-arch> <package> <version>` a line, `#` comments.
//! `scripts/fetch-inputs.sh` downloads them into
//! `<cache>/osam/debs/<first 16 hex digits of the file's sha256>/`.

use sha2::{Digest, Sha256};

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Debian architecture: `amd64`, `i386` or `all`.
    pub arch: String,
    /// Binary package name.
    pub package: String,
    /// Exact version.
    pub version: String,
}

impl Pin {
    /// The file name `apt-get download` gives the package (an epoch's `:`
    /// as `%3a`).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

/// An error in the pins file.
#[derive(Debug, thiserror::Error)]
#[error("pins line {line}: {reason}")]
pub struct PinsError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses the pins file.
pub fn parse(text: &str) -> Result<Vec<Pin>, PinsError> {
    let mut pins = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = body.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [arch, package, version] => {
                if !matches!(*arch, "amd64" | "i386" | "all") {
                    return Err(PinsError {
                        line: n + 1,
                        reason: format!("unknown architecture {arch:?}"),
                    });
                }
                pins.push(Pin {
                    arch: (*arch).to_owned(),
                    package: (*package).to_owned(),
                    version: (*version).to_owned(),
                });
            }
            _ => {
                return Err(PinsError {
                    line: n + 1,
                    reason: "expected '<debian-arch> <package> <version>'".into(),
                });
            }
        }
    }
    Ok(pins)
}

/// The cache key of a pins file: the first 16 hex digits of its sha256.
pub fn cache_key(pins_file: &[u8]) -> String {
    let digest = Sha256::digest(pins_file);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pins() {
        let pins = parse(
            "# comment\n\namd64 linux-image-6.1.0-50-amd64 6.1.176-1\ni386 busybox 1:1.35.0-4+b3 # trailing\n",
        )
        .unwrap();
        assert_eq!(pins.len(), 2);
        assert_eq!(
            pins[0].deb_file_name(),
            "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"
        );
        assert_eq!(pins[1].deb_file_name(), "busybox_1%3a1.35.0-4+b3_i386.deb");
        assert_eq!(parse("amd64 x\n").unwrap_err().line, 1);
        assert!(parse("arm64 x 1\n").is_err());
    }

    #[test]
    fn cache_key_is_sha256_prefix() {
        // sha256("") = e3b0c44298fc1c14...
        assert_eq!(cache_key(b""), "e3b0c44298fc1c14");
    }
}
