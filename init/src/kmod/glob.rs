//! An fnmatch-style matcher for `modules.alias` patterns.
//!
//! Supports `*` (any run of characters), `?` (any one character),
//! bracket expressions `[...]` with ranges and `!` or `^` negation, and
//! `\` escaping the next character. A `[` without a closing `]` matches
//! itself. The pattern is compiled once; matching is iterative with a
//! single backtrack point (the last `*`), so it takes at most
//! `pattern × text` steps however hostile the pattern.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Exactly this byte.
    Byte(u8),
    /// `?`: any one byte.
    Any,
    /// `*`: any run of bytes, empty included.
    Star,
    /// `[...]`: one byte in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl Token {
    fn matches(&self, b: u8) -> bool {
        match self {
            Token::Byte(c) => *c == b,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
            }
        }
    }
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    /// The literal bytes every match starts with (a quick pre-check).
    prefix: Vec<u8>,
}

impl Glob {
    /// Compiles `pattern`. Never fails: malformed brackets are literal.
    pub fn new(pattern: &str) -> Glob {
        let p = pattern.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = p.get(i) {
            match c {
                b'*' => {
                    // Runs of stars are one star.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    i += 1;
                }
                b'?' => {
                    tokens.push(Token::Any);
                    i += 1;
                }
                b'\\' => match p.get(i + 1) {
                    Some(&next) => {
                        tokens.push(Token::Byte(next));
                        i += 2;
                    }
                    None => {
                        tokens.push(Token::Byte(b'\\'));
                        i += 1;
                    }
                },
                b'[' => match parse_class(p, i + 1) {
                    Some((token, next)) => {
                        tokens.push(token);
                        i = next;
                    }
                    None => {
                        tokens.push(Token::Byte(b'['));
                        i += 1;
                    }
                },
                _ => {
                    tokens.push(Token::Byte(c));
                    i += 1;
                }
            }
        }
        let prefix = tokens
            .iter()
            .map_while(|t| match t {
                Token::Byte(b) => Some(*b),
                _ => None,
            })
            .collect();
        Glob { tokens, prefix }
    }

    /// Whether the pattern has no wildcards (matches one string only).
    pub fn is_literal(&self) -> bool {
        self.prefix.len() == self.tokens.len()
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let t = text.as_bytes();
        if !t.starts_with(&self.prefix) {
            return false;
        }
        let tokens = &self.tokens;
        let (mut ti, mut pi) = (0usize, 0usize);
        // Where to resume after the last star: (token after it, text index).
        let mut resume: Option<(usize, usize)> = None;
        loop {
            match (tokens.get(pi), t.get(ti)) {
                (Some(Token::Star), _) => {
                    resume = Some((pi + 1, ti));
                    pi += 1;
                }
                (Some(tok), Some(&b)) if tok.matches(b) => {
                    pi += 1;
                    ti += 1;
                }
                (None, None) => return true,
                _ => match resume {
                    // Let the last star swallow one more byte and retry.
                    Some((after_star, star_ti)) if star_ti < t.len() => {
                        resume = Some((after_star, star_ti + 1));
                        pi = after_star;
                        ti = star_ti + 1;
                    }
                    _ => return false,
                },
            }
        }
    }
}

/// Parses a bracket expression whose body starts at `start` (just after
/// the `[`). Returns the token and the index after the closing `]`, or
/// `None` if there is no closing bracket.
fn parse_class(p: &[u8], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = matches!(p.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == b']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        let lo = if c == b'\\' {
            i += 1;
            *p.get(i)?
        } else {
            c
        };
        i += 1;
        // A range `a-z`, unless the `-` is the last thing before `]`.
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&n| n != b']') {
            let mut hi = *p.get(i + 1)?;
            i += 2;
            if hi == b'\\' {
                hi = *p.get(i)?;
                i += 1;
            }
            if lo <= hi {
                ranges.push((lo, hi));
            }
        } else {
            ranges.push((lo, lo));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let table: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc", "ab", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*", "a", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*c", "c", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("a**b", "ab", true),
            ("?", "", false),
            ("?", "x", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[abc]", "b", true),
            ("[abc]", "d", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[!a-c]", "d", true),
            ("[!a-c]", "a", false),
            ("[^0-9]", "x", true),
            ("[^0-9]", "5", false),
            ("[]a]", "]", true),
            ("[]a]", "a", true),
            ("[!]]", "]", false),
            ("[!]]", "x", true),
            ("[a-]", "-", true),
            ("[-a]", "-", true),
            ("[z-a]", "m", false),
            ("[", "[", true),
            ("[abc", "[abc", true),
            ("a[", "a[", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("a\\", "a\\", true),
            ("[\\]]", "]", true),
            (
                "usb:v0BDAp8153d*dc*dsc*dp*ic02isc06ip00in*",
                "usb:v0BDAp8153d3100dc00dsc00dp00ic02isc06ip00in01",
                true,
            ),
            (
                "pci:v000015ADd000007C0sv*sd*bc*sc*i*",
                "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00",
                true,
            ),
            (
                "pci:v000015ADd000007C0sv*sd*bc*sc*i*",
                "pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00",
                false,
            ),
            (
                "pci:v*d*sv*sd*bc01sc08i02*",
                "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
                true,
            ),
            ("acpi*:PNP0A03:*", "acpi:PNP0A03:", true),
            ("acpi*:PNP0A03:*", "acpi:PNP0A08:PNP0A03:", true),
            ("virtio:d00000002v*", "virtio:d00000002v00001AF4", true),
            (
                "dmi*:svn*VMware*:*",
                "dmi:bvnPhoenix:svnVMware,Inc.:pnVMware7,1:",
                true,
            ),
        ];
        for (pattern, text, want) in table {
            assert_eq!(
                Glob::new(pattern).matches(text),
                *want,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn literal_patterns() {
        assert!(Glob::new("fs-ext4").is_literal());
        assert!(!Glob::new("fs-*").is_literal());
        assert!(!Glob::new("a?").is_literal());
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        // Exponential for a naive recursive matcher.
        let pattern = "a*".repeat(200) + "b";
        let text = "a".repeat(5000);
        let g = Glob::new(&pattern);
        let start = std::time::Instant::now();
        assert!(!g.matches(&text));
        assert!(g.matches(&(text.clone() + "b")));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
