//! Unicode simple case folding, for comparing object keys the way lenient
//! decoders do.
//!
//! Go's `encoding/json` (and so every Go MCP server) matches an object key to
//! a struct field case-insensitively under Unicode *simple* case folding, and
//! the last matching key wins: `{"name":"echo","Name":"rm"}` is `rm` to Go.
//! `"paramſ"` (U+017F) is `params` and `"\u212Aey"` (Kelvin sign) is `key`.
//! The gateway therefore treats two keys as the same key when they fold
//! together, and refuses a message that has both.
//!
//! Two characters fold together when they are in the same orbit of the simple
//! case folding relation (`C` + `S` lines of CaseFolding.txt; full `F` and
//! Turkic `T` mappings are not used by simple folding, so `İ` and `ı` fold only
//! to themselves). Each character is mapped to the smallest member of its
//! orbit (table generated from Go's `unicode.SimpleFold`, see
//! `scripts/gen_fold_table.go`); ASCII letters fold to upper case, so the
//! ASCII path needs neither the table nor an allocation.

use crate::request::fold_table::FOLD;
use std::cmp::Ordering;

/// The representative of `c`'s simple case folding orbit.
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let u = c as u32;
    match FOLD.binary_search_by_key(&u, |&(from, _)| from) {
        Ok(i) => FOLD.get(i).and_then(|&(_, to)| char::from_u32(to)).unwrap_or(c),
        Err(_) => c,
    }
}

/// Orders strings by their folded form (a total order in which fold-equal
/// strings are adjacent, for sorting keys).
pub fn fold_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        // Same order as the general path: ASCII chars are their bytes.
        return a.bytes().map(|c| c.to_ascii_uppercase()).cmp(b.bytes().map(|c| c.to_ascii_uppercase()));
    }
    a.chars().map(fold_char).cmp(b.chars().map(fold_char))
}

/// Whether `a` and `b` are equal under simple case folding.
pub fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

/// The first pair of keys (in input order: earlier, later) that are equal
/// under simple case folding. Small objects are compared pairwise without
/// allocating; larger ones are sorted by folded form (`O(n log n)`, so a
/// hostile object with many keys cannot make this quadratic).
pub fn duplicate<'a>(keys: &[&'a str]) -> Option<(&'a str, &'a str)> {
    const PAIRWISE_MAX: usize = 8;
    if keys.len() <= PAIRWISE_MAX {
        for (j, b) in keys.iter().enumerate() {
            if let Some(a) = keys.iter().take(j).find(|a| fold_eq(a, b)) {
                return Some((a, b));
            }
        }
        return None;
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let key = |i: usize| keys.get(i).copied().unwrap_or("");
    // Stable: among equal keys, input order is kept.
    order.sort_by(|&x, &y| fold_cmp(key(x), key(y)));
    // The later of the earliest-reported pair: the duplicate a reader meets first.
    order
        .windows(2)
        .filter_map(|w| match w {
            [x, y] if fold_eq(key(*x), key(*y)) => Some((*x, *y)),
            _ => None,
        })
        .min_by_key(|&(_, y)| y)
        .map(|(x, y)| (key(x), key(y)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_like_go() {
        for (a, b) in [
            ("method", "Method"),
            ("method", "METHOD"),
            ("params", "param\u{17F}"),
            ("key", "\u{212A}ey"),
            ("\u{3A3}", "\u{3C3}"),
            ("\u{3C3}", "\u{3C2}"),
            ("\u{B5}", "\u{3BC}"),
            ("\u{C5}", "\u{212B}"),
            ("\u{DF}", "\u{1E9E}"),
            ("\u{1FB3}", "\u{1FBC}"),
            ("\u{13A0}", "\u{AB70}"),
        ] {
            assert!(fold_eq(a, b), "{a:?} {b:?}");
            assert_eq!(fold_cmp(a, b), Ordering::Equal, "{a:?} {b:?}");
        }
        // Only simple folding: no multi-character or Turkic mappings.
        for (a, b) in [("i", "\u{131}"), ("i", "\u{130}"), ("ss", "\u{DF}"), ("name", "nam"), ("a", "b")] {
            assert!(!fold_eq(a, b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn the_table_is_sorted_and_maps_to_smaller_representatives() {
        assert!(FOLD.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(FOLD.iter().all(|&(from, to)| to < from && char::from_u32(to).is_some()));
        // Every representative is its own representative (idempotent).
        assert!(FOLD.iter().all(|&(_, to)| fold_char(char::from_u32(to).unwrap()) == char::from_u32(to).unwrap()));
    }

    #[test]
    fn duplicates_small_and_large() {
        assert_eq!(duplicate(&["jsonrpc", "id", "method", "Method"]), Some(("method", "Method")));
        assert_eq!(duplicate(&["a", "b"]), None);
        let mut many: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        assert_eq!(duplicate(&many.iter().map(String::as_str).collect::<Vec<_>>()), None);
        many.push("K17".into());
        many.push("k\u{17F}".into());
        many.push("K\u{17F}".into());
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(duplicate(&refs), Some(("k17", "K17")));
    }
}
