//! The shell patterns of modules.alias (`fnmatch(3)` without flags).

/// Whether `text` matches the shell pattern `pattern`: `*` (any run,
/// slashes included), `?` (any one character), `[...]` (a set, with ranges
/// and `!`/`^` negation) and `\` escapes.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match_set(&p[pi..], t[ti]),
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(2),
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the set at the start of `p` (which starts with `[`);
/// returns the set's length in the pattern where it matches. A `[` that is
/// never closed matches nothing.
fn match_set(p: &[char], c: char) -> Option<usize> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let &ch = p.get(i)?;
        if ch == ']' && !first {
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            if (ch..=p[i + 2]).contains(&c) {
                found = true;
            }
            i += 3;
        } else {
            if ch == c {
                found = true;
            }
            i += 1;
        }
    }
    (found != negate).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        let pci = "pci:v000015ADd000007C0sv*sd*bc*sc*i*";
        for (pattern, text, want) in [
            (
                pci,
                "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00",
                true,
            ),
            (
                pci,
                "pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00",
                false,
            ),
            ("virtio:d00000009v*", "virtio:d00000009v00001AF4", true),
            ("fs-9p", "fs-9p", true),
            ("fs-9p", "fs-9p2", false),
            ("a?c", "abc", true),
            ("a[0-9]c", "a5c", true),
            ("a[!0-9]c", "a5c", false),
            ("a[]]c", "a]c", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("x[ab", "x[ab", false),
        ] {
            assert_eq!(matches(pattern, text), want, "{pattern} vs {text}");
        }
    }
}
