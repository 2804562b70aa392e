//! The `regex` argument rule: the whole value must match the pattern.
//!
//! regex-lite decides every pattern, but its matcher (a Pike VM) walks
//! every NFA state for every character, so a counted repetition such as
//! `[a-z0-9 ]{1,200}` costs hundreds of state visits per character: most
//! of the time a `tools/call` spends in the filter. Most rules are a plain
//! sequence of character runs (`[a-z0-9-]+`, `/data/[^/]+\.txt`,
//! `\d{4}-\d{2}-\d{2}`), so such a pattern is also compiled into [`Run`]s
//! and matched by a linear-time check with the same answer; any other
//! syntax (groups, alternation, flags, look-arounds, set operations) is
//! left to regex-lite. The unit tests compare both on generated patterns
//! and values.

/// A compiled `regex` rule.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex_lite::Regex,
    /// The same pattern as character runs, when it is one.
    runs: Option<Vec<Run>>,
}

impl Pattern {
    /// Compiles `source`, anchored at both ends. regex-lite's verdict on
    /// the syntax (and its size limits) is final: the runs are only an
    /// alternative way to match a pattern it accepted.
    pub fn new(source: &str) -> Result<Self, String> {
        let regex = regex_lite::Regex::new(&format!("^(?:{source})$")).map_err(|e| e.to_string())?;
        Ok(Self { source: source.to_string(), regex, runs: runs(source) })
    }

    /// The pattern as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        match &self.runs {
            Some(runs) => runs_match(runs, value),
            None => self.regex.is_match(value),
        }
    }

    /// Whether the pattern is matched as character runs (not by regex-lite).
    pub fn is_runs(&self) -> bool {
        self.runs.is_some()
    }

    /// regex-lite's answer for `value`: what [`Pattern::is_match`] must
    /// equal (the fuzz target `regex_rule` compares them).
    pub fn regex_lite_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

/// One item of the pattern: `min..=max` characters of `class`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    class: Class,
    min: usize,
    /// `usize::MAX`: unbounded.
    max: usize,
}

/// A set of characters: inclusive ranges, possibly negated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    ranges: Vec<(char, char)>,
    negated: bool,
}

impl Class {
    fn one(c: char) -> Self {
        Class { ranges: vec![(c, c)], negated: false }
    }

    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// `.`: any character but a line feed (regex-lite's default).
fn dot() -> Class {
    Class { ranges: vec![('\n', '\n')], negated: true }
}

/// The ASCII-only Perl classes of regex-lite (`\d`, `\w`, `\s`).
fn perl_class(c: char) -> Option<&'static [(char, char)]> {
    match c {
        'd' => Some(&[('0', '9')]),
        'w' => Some(&[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')]),
        's' => Some(&[('\t', '\r'), (' ', ' ')]),
        _ => None,
    }
}

/// Characters that are literal when escaped. Letters and digits are not
/// here: `\n`, `\x41`, `\b`… mean other things and are left to regex-lite.
fn escapable(c: char) -> bool {
    matches!(c, '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' | '-' | '/')
}

/// A pattern's character runs, or `None` when it uses anything else.
/// A leading `^` and a trailing `$` are kept out: the rule anchors anyway.
fn runs(source: &str) -> Option<Vec<Run>> {
    let body = source.strip_prefix('^').unwrap_or(source);
    let body = match body.strip_suffix('$') {
        // `\$` at the end is a literal dollar, not an anchor.
        Some(b) if !ends_escaped(b) => b,
        _ => body,
    };
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let (class, next) = atom(&chars, i)?;
        let (min, max, next) = quantifier(&chars, next)?;
        out.push(Run { class, min, max });
        i = next;
    }
    Some(out)
}

/// Whether `s` ends in an odd number of backslashes.
fn ends_escaped(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// One atom at `i`: a literal, `.`, an escape or a bracket class.
fn atom(chars: &[char], i: usize) -> Option<(Class, usize)> {
    match *chars.get(i)? {
        '.' => Some((dot(), i + 1)),
        '\\' => {
            let c = *chars.get(i + 1)?;
            match perl_class(c) {
                Some(ranges) => Some((Class { ranges: ranges.to_vec(), negated: false }, i + 2)),
                None if escapable(c) => Some((Class::one(c), i + 2)),
                None => None,
            }
        }
        '[' => bracket(chars, i + 1),
        '+' | '*' | '?' | '(' | ')' | '|' | ']' | '{' | '}' | '^' | '$' | '#' | '&' | '~' => None,
        c if c != ' ' && (c.is_whitespace() || c.is_control()) => None,
        c => Some((Class::one(c), i + 1)),
    }
}

/// A bracket class after its `[`: optional `^`, then literals, escapes,
/// Perl classes and `a-z` ranges up to `]`. Nested classes, `[:alpha:]`,
/// set operations and a leading `]` are left to regex-lite.
fn bracket(chars: &[char], mut i: usize) -> Option<(Class, usize)> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let first = i;
    loop {
        let c = *chars.get(i)?;
        match c {
            ']' if i > first => return Some((Class { ranges, negated }, i + 1)),
            ']' | '[' => return None,
            '-' if i == first || chars.get(i + 1) == Some(&']') => {
                ranges.push(('-', '-'));
                i += 1;
            }
            '-' => return None,
            _ => {
                let (lo, next) = class_char(chars, i)?;
                let lo = match lo {
                    ClassItem::Perl(set) => {
                        // `\d-z` is an error in regex-lite; never a range here.
                        if chars.get(next) == Some(&'-') && chars.get(next + 1) != Some(&']') {
                            return None;
                        }
                        ranges.extend_from_slice(set);
                        i = next;
                        continue;
                    }
                    ClassItem::Char(c) => c,
                };
                if chars.get(next) == Some(&'-') && chars.get(next + 1).is_some_and(|&c| c != ']') {
                    let (hi, after) = class_char(chars, next + 1)?;
                    let ClassItem::Char(hi) = hi else { return None };
                    if hi < lo {
                        return None;
                    }
                    ranges.push((lo, hi));
                    i = after;
                } else {
                    ranges.push((lo, lo));
                    i = next;
                }
            }
        }
    }
}

enum ClassItem {
    Char(char),
    Perl(&'static [(char, char)]),
}

/// One character inside a bracket class (a literal or an escape).
fn class_char(chars: &[char], i: usize) -> Option<(ClassItem, usize)> {
    match *chars.get(i)? {
        '\\' => {
            let c = *chars.get(i + 1)?;
            match perl_class(c) {
                Some(set) => Some((ClassItem::Perl(set), i + 2)),
                None if escapable(c) => Some((ClassItem::Char(c), i + 2)),
                None => None,
            }
        }
        '[' | ']' | '-' => None,
        // `&&` and `~~` are set operations.
        c @ ('&' | '~') if chars.get(i + 1) == Some(&c) => None,
        c if c != ' ' && (c.is_whitespace() || c.is_control()) => None,
        c => Some((ClassItem::Char(c), i + 1)),
    }
}

/// The repetition after an atom (`?`, `*`, `+`, `{n}`, `{n,}`, `{n,m}`,
/// each possibly lazy: laziness does not change whether a value matches).
fn quantifier(chars: &[char], i: usize) -> Option<(usize, usize, usize)> {
    let (min, max, next) = match chars.get(i) {
        Some('?') => (0, 1, i + 1),
        Some('*') => (0, usize::MAX, i + 1),
        Some('+') => (1, usize::MAX, i + 1),
        Some('{') => {
            let close = i + chars.get(i..)?.iter().position(|&c| c == '}')?;
            let inner: String = chars.get(i + 1..close)?.iter().collect();
            let number = |s: &str| -> Option<usize> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse().ok()
            };
            let (min, max) = match inner.split_once(',') {
                None => {
                    let n = number(&inner)?;
                    (n, n)
                }
                Some((lo, "")) => (number(lo)?, usize::MAX),
                Some((lo, hi)) => (number(lo)?, number(hi)?),
            };
            if min > max {
                return None;
            }
            (min, max, close + 1)
        }
        _ => return Some((1, 1, i)),
    };
    match chars.get(next) {
        Some('?') => Some((min, max, next + 1)),
        // A second repetition (`a**`, `a{2}{3}`) is left to regex-lite.
        Some('*' | '+' | '{') => None,
        _ => Some((min, max, next)),
    }
}

/// Whether the whole of `value` is the runs in order. `reach[p]`: the
/// runs so far can end after the first `p` characters. A run ends at `p`
/// when some start `q` in `reach` lies within its length bounds and every
/// character in `q..p` is in its class, i.e. `q` is not before the start
/// of the class's run of characters that ends at `p`. Linear per run.
fn runs_match(runs: &[Run], value: &str) -> bool {
    if let [run] = runs {
        // The common case, without allocating: one class for the whole value.
        let mut n = 0usize;
        for c in value.chars() {
            if !run.class.contains(c) {
                return false;
            }
            n += 1;
        }
        return run.min <= n && n <= run.max;
    }
    let chars: Vec<char> = value.chars().collect();
    let mut reach = vec![false; chars.len() + 1];
    if let Some(start) = reach.first_mut() {
        *start = true;
    }
    // prefix[j]: how many of reach[..j] are true.
    let mut prefix = vec![0usize; chars.len() + 2];
    for run in runs {
        let mut count = 0;
        for (slot, &r) in prefix.iter_mut().skip(1).zip(&reach) {
            count += usize::from(r);
            *slot = count;
        }
        let mut run_start = 0;
        for (p, slot) in reach.iter_mut().enumerate() {
            if p > 0 && !chars.get(p - 1).is_some_and(|&c| run.class.contains(c)) {
                run_start = p;
            }
            *slot = match p.checked_sub(run.min) {
                Some(hi) => {
                    let lo = run_start.max(p.saturating_sub(run.max));
                    lo <= hi && matches!((prefix.get(hi + 1), prefix.get(lo)), (Some(a), Some(b)) if a > b)
                }
                None => false,
            };
        }
    }
    reach.last().copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// A pattern the runs must take, and what they must read.
    fn runs_of(p: &str) -> Vec<Run> {
        runs(p).unwrap_or_else(|| panic!("{p:?} should be taken as runs"))
    }

    #[test]
    fn common_rule_shapes_are_taken_as_runs() {
        for p in [
            "^[a-z0-9 ]{1,200}$",
            "[a-z0-9-]+",
            "/data/[^/]+\\.txt",
            "\\d{4}-\\d{2}-\\d{2}",
            "[A-Za-z_][A-Za-z0-9_]*",
            "https://example\\.com/.*",
            "[-a-z]+",
            "[a-z-]+",
            "hello world, again!",
        ] {
            runs_of(p);
        }
        assert_eq!(
            runs_of("^[a-c]{2,5}$"),
            vec![Run { class: Class { ranges: vec![('a', 'c')], negated: false }, min: 2, max: 5 }]
        );
        assert_eq!(runs_of("a\\$").len(), 2, "an escaped dollar is a literal");
    }

    #[test]
    fn anything_else_is_left_to_regex_lite() {
        for p in [
            "(a|b)",
            "a|b",
            "(?i)abc",
            "[[:alpha:]]+",
            "[a-z&&[^x]]",
            "[a--b]",
            "\\bword",
            "\\x41",
            "\\n",
            "a{,3}",
            "a**",
            "a{2}{3}",
            "[]a]",
            "a^b",
            "a$b",
            "\\pL",
            "[\\d-z]",
            "\\A",
            "\\z",
            " \t",
        ] {
            assert_eq!(runs(p), None, "{p:?}");
        }
    }

    const ATOMS: &[&str] = &[
        "a", "b", "-", "/", "é", ".", "\\.", "\\d", "\\w", "\\s", "\\-", "\\$", "\\\\", "[ab]", "[^a]", "[a-c]",
        "[-a]", "[a-]", "[^/]", "\\/", "[&]", "[~a]", ",", "@", "[\\d_]", "[\\s.]", "[é-ü]", "[ -~]", "x", "0",
    ];
    const QUANTIFIERS: &[&str] =
        &["", "", "", "?", "*", "+", "{2}", "{0,3}", "{1,}", "{2,4}", "+?", "*?", "{0}", "{1,200}"];
    const VALUE_CHARS: &[&str] = &[
        "a", "b", "c", "-", "/", ".", "é", "ü", "0", "7", "_", " ", "\n", "\t", "\r", "\x0b", "$", "&", ",", "@", "\\",
        "x", "~",
    ];

    /// The runs answer exactly what regex-lite answers, on generated rule
    /// patterns (each checked to be taken as runs) and values built from
    /// the characters those patterns mention.
    #[test]
    fn runs_agree_with_regex_lite() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut checked = 0;
        for _ in 0..4000 {
            let mut p = String::new();
            if rng.below(3) == 0 {
                p.push('^');
            }
            for _ in 0..rng.below(5) {
                p.push_str(rng.one(ATOMS));
                p.push_str(rng.one(QUANTIFIERS));
            }
            if rng.below(3) == 0 {
                p.push('$');
            }
            let pattern = Pattern::new(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            assert!(pattern.is_runs(), "{p:?} should be taken as runs");
            for _ in 0..40 {
                let v: String = (0..rng.below(9)).map(|_| rng.one(VALUE_CHARS)).collect();
                assert_eq!(pattern.is_match(&v), pattern.regex_lite_match(&v), "pattern {p:?} value {v:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 160_000);
    }

    /// Values that the pattern's own pieces spell, so matches are common
    /// and the boundaries between runs are exercised, not just refusals.
    #[test]
    fn runs_agree_with_regex_lite_on_near_matches() {
        let mut rng = Rng(42);
        let (mut matched, mut total) = (0, 0);
        let pieces: &[(&str, &[&str])] = &[
            ("[a-c]{1,3}-\\d+", &["a", "b", "c", "-", "1", "9", "d"]),
            ("/data/[^/]+\\.txt", &["/", "data", "x", ".", "txt", "/data/"]),
            ("\\d{4}-\\d{2}-\\d{2}", &["20", "2026", "-", "11", "3", "a"]),
            ("a*a*b?a+", &["a", "b", "aa"]),
            ("[ab]{0,2}[bc]{1,2}c?", &["a", "b", "c", "cc"]),
            (".*\\.json", &[".", "json", "a", "\n", ".json"]),
            ("^[a-z0-9 ]{1,200}$", &["abc ", "z9", "A", "\n", " "]),
            ("x?[^x]{2}x", &["x", "y", "\n", "xx"]),
        ];
        for &(p, parts) in pieces {
            let pattern = Pattern::new(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            assert!(pattern.is_runs(), "{p:?}");
            for _ in 0..3000 {
                let v: String = (0..rng.below(7)).map(|_| rng.one(parts)).collect();
                let want = pattern.regex_lite_match(&v);
                assert_eq!(pattern.is_match(&v), want, "pattern {p:?} value {v:?}");
                matched += usize::from(want);
                total += 1;
            }
        }
        assert!(matched * 20 > total, "too few matching values to test the boundaries: {matched}/{total}");
    }

    #[test]
    fn long_values_and_bounds() {
        let p = Pattern::new("^[a-z0-9 ]{1,200}$").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.is_match(&"a".repeat(200)));
        assert!(!p.is_match(&"a".repeat(201)));
        assert!(!p.is_match(""));
        assert!(!p.is_match("hello\nrm"));
        let q = Pattern::new("[a-z]+-[0-9]{2,3}").unwrap_or_else(|e| panic!("{e}"));
        for v in ["abc-12", "abc-123", "abc-1", "abc-1234", "-12", "abc12", "ab-c-12"] {
            assert_eq!(q.is_match(v), q.regex.is_match(v), "{v:?}");
        }
    }
}
