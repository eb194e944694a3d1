//! Versions ordered as people read them: runs of digits compare as numbers, everything else
//! as text, so `12.10` comes after `12.9` and `24.04.3` after `24.04`. A version that is a
//! prefix of another is the older one; a pre-release marker sorts before the release it names
//! (`40-beta` before `40`), as distributions name their test builds.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Number(&'a str),
    Text(&'a str),
}

fn parts(v: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(c) = rest.chars().next() {
        let digit = c.is_ascii_digit();
        let end = rest
            .find(|ch: char| ch.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        out.push(if digit {
            Part::Number(run.trim_start_matches('0'))
        } else {
            Part::Text(run)
        });
        rest = tail;
    }
    out
}

/// Separators carry no order of their own: `24.04` and `24-04` are the same release.
fn is_separator(p: &Part<'_>) -> bool {
    matches!(p, Part::Text(t) if t.chars().all(|c| matches!(c, '.' | '-' | '_' | '+' | '~')))
}

/// Text that marks a build before the release it names.
fn is_pre_release(p: &Part<'_>) -> bool {
    let Part::Text(t) = p else { return false };
    let t = t
        .trim_matches(|c| matches!(c, '.' | '-' | '_' | '~'))
        .to_ascii_lowercase();
    ["alpha", "beta", "rc", "pre", "preview"]
        .iter()
        .any(|m| t.starts_with(m))
}

pub fn compare(a: &str, b: &str) -> Ordering {
    let a: Vec<_> = parts(a).into_iter().filter(|p| !is_separator(p)).collect();
    let b: Vec<_> = parts(b).into_iter().filter(|p| !is_separator(p)).collect();
    for (x, y) in a.iter().zip(&b) {
        let o = match (x, y) {
            (Part::Number(x), Part::Number(y)) => x.len().cmp(&y.len()).then(x.cmp(y)),
            (Part::Text(x), Part::Text(y)) => x.cmp(y),
            // `40` against `40-beta1`: the release is newer than its pre-release.
            (Part::Number(_), Part::Text(_)) => return Ordering::Greater,
            (Part::Text(_), Part::Number(_)) => return Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    match a.len().cmp(&b.len()) {
        Ordering::Less if is_pre_release(&b[a.len()]) => Ordering::Greater,
        Ordering::Greater if is_pre_release(&a[b.len()]) => Ordering::Less,
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_people_read_them() {
        let ordered = [
            "9", "12", "12.1", "12.9", "12.10", "12.10.1", "24.04", "24.04.3", "24.10",
        ];
        for w in ordered.windows(2) {
            assert_eq!(compare(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(
                compare(w[1], w[0]),
                Ordering::Greater,
                "{} > {}",
                w[1],
                w[0]
            );
        }
        assert_eq!(compare("24.04", "24-04"), Ordering::Equal);
        assert_eq!(compare("012", "12"), Ordering::Equal);
    }

    #[test]
    fn pre_releases_before_their_release() {
        assert_eq!(compare("40-beta", "40"), Ordering::Less);
        assert_eq!(compare("40", "40_rc1"), Ordering::Greater);
        assert_eq!(compare("40-beta", "40-rc1"), Ordering::Less);
        assert_eq!(compare("3.21.0", "3.21.0-r1"), Ordering::Less);
        assert_eq!(compare("40-beta", "39"), Ordering::Greater);
    }
}
