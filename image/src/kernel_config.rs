//! Checking a kernel `.config` against the stack's required-options
//! fragment (`kernel-config/required.config`).
//!
//! Both are read the same way: `CONFIG_X=y`, `=m`, `="string"`, a number,
//! `=n`, and `# CONFIG_X is not set` (which means `n`). A fragment's `=m`
//! accepts `y` too (built in is as good as a module the initramfs would
//! load); `=y` wants `y`; `=n` wants the option off; anything else wants
//! the same value.

use std::collections::BTreeMap;

/// The value of a kernel option.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigValue {
    /// `=y`.
    Yes,
    /// `=m`.
    Module,
    /// `=n`, `# … is not set`, or absent.
    No,
    /// Any other value, strings with their quotes.
    Other(String),
}

impl ConfigValue {
    fn parse(raw: &str) -> Self {
        match raw {
            "y" => Self::Yes,
            "m" => Self::Module,
            "n" => Self::No,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Yes => f.write_str("y"),
            Self::Module => f.write_str("m"),
            Self::No => f.write_str("n"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// Parses a `.config` or a fragment: option name (with `CONFIG_`) to value.
/// Lines that are neither assignments nor `is not set` comments are
/// ignored.
pub fn parse(text: &str) -> BTreeMap<String, ConfigValue> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set")
                && name.starts_with("CONFIG_")
                && !name.contains(' ')
            {
                out.insert(name.to_owned(), ConfigValue::No);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = line.split_once('=')
            && name.starts_with("CONFIG_")
        {
            out.insert(name.trim().to_owned(), ConfigValue::parse(value.trim()));
        }
    }
    out
}

/// An option the config does not have as the fragment wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The option (`CONFIG_VMWARE_PVSCSI`).
    pub option: String,
    /// What the fragment asks for.
    pub wanted: ConfigValue,
    /// What the config has.
    pub found: ConfigValue,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: wanted {}, found {}",
            self.option, self.wanted, self.found
        )
    }
}

fn satisfies(wanted: &ConfigValue, found: &ConfigValue) -> bool {
    match wanted {
        ConfigValue::Module => matches!(found, ConfigValue::Module | ConfigValue::Yes),
        other => other == found,
    }
}

/// Checks `config_text` (a kernel's `.config`) against `fragment_text`;
/// the error lists every option that falls short, sorted by name.
pub fn check(config_text: &str, fragment_text: &str) -> Result<(), Vec<Missing>> {
    let config = parse(config_text);
    let missing: Vec<Missing> = parse(fragment_text)
        .into_iter()
        .filter_map(|(option, wanted)| {
            let found = config.get(&option).cloned().unwrap_or(ConfigValue::No);
            (!satisfies(&wanted, &found)).then_some(Missing {
                option,
                wanted,
                found,
            })
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// The module names of `kernel-config/modules.list`: one a line, `#`
/// comments and blank lines ignored.
pub fn parse_module_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConfigValue::*;

    #[test]
    fn parses_every_form() {
        let c = parse(
            "# comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"str x\"\nCONFIG_E=0x10\nCONFIG_F=n\nNOT_CONFIG=y\n# CONFIG_G is not set really\n",
        );
        assert_eq!(c["CONFIG_A"], Yes);
        assert_eq!(c["CONFIG_B"], Module);
        assert_eq!(c["CONFIG_C"], No);
        assert_eq!(c["CONFIG_D"], Other("\"str x\"".into()));
        assert_eq!(c["CONFIG_E"], Other("0x10".into()));
        assert_eq!(c["CONFIG_F"], No);
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn check_table() {
        let m = |o: &str, w, f| Missing {
            option: o.into(),
            wanted: w,
            found: f,
        };
        // (config, fragment, expected)
        type Row = (&'static str, &'static str, Result<(), Vec<Missing>>);
        let table: Vec<Row> = vec![
            ("CONFIG_X=m\n", "CONFIG_X=m\n", Ok(())),
            ("CONFIG_X=y\n", "CONFIG_X=m\n", Ok(())),
            (
                "CONFIG_X=m\n",
                "CONFIG_X=y\n",
                Err(vec![m("CONFIG_X", Yes, Module)]),
            ),
            ("", "CONFIG_X=m\n", Err(vec![m("CONFIG_X", Module, No)])),
            (
                "# CONFIG_X is not set\n",
                "CONFIG_X=y\n",
                Err(vec![m("CONFIG_X", Yes, No)]),
            ),
            ("", "# CONFIG_X is not set\n", Ok(())),
            (
                "CONFIG_X=y\n",
                "CONFIG_X=n\n",
                Err(vec![m("CONFIG_X", No, Yes)]),
            ),
            ("CONFIG_S=\"a\"\n", "CONFIG_S=\"a\"\n", Ok(())),
            (
                "CONFIG_S=\"b\"\n",
                "CONFIG_S=\"a\"\n",
                Err(vec![m(
                    "CONFIG_S",
                    Other("\"a\"".into()),
                    Other("\"b\"".into()),
                )]),
            ),
            (
                "CONFIG_A=y\n",
                "CONFIG_B=y\nCONFIG_A=y\nCONFIG_C=m\n",
                Err(vec![m("CONFIG_B", Yes, No), m("CONFIG_C", Module, No)]),
            ),
        ];
        for (config, fragment, want) in table {
            assert_eq!(check(config, fragment), want, "{config:?} vs {fragment:?}");
        }
    }

    #[test]
    fn module_list() {
        assert_eq!(
            parse_module_list("# c\nvmw_pvscsi\n\n dm_mod # device-mapper\n"),
            ["vmw_pvscsi", "dm_mod"]
        );
    }
}
