//! Resource URI normalisation (resource allow/deny prefixes) on arbitrary text.
//! Properties: no panic; the normal form is a fixed point (normalising it
//! again changes nothing); it holds no dot segment, control character,
//! backslash or encoded separator; it differs from the URI only in the case of
//! ASCII letters, in escapes (both decode to the same text) and, for `file:`
//! URIs, in the spellings that name the same local file (`file:/p`,
//! `file://localhost/p`, `file:////p`, empty segments), so it never reads as
//! another resource; and when it falls under a prefix, so does what a
//! backend that decodes every escape reads (it never widens a rule).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::request::resource_uri::normalise;

/// Every %XX decoded (what the most permissive backend reads).
fn decode_all(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A `file:` URI's local path in one spelling, written independently of the
/// normaliser: `localhost` authority dropped, runs of `/` collapsed. Other
/// URIs are returned as they are.
fn same_file(decoded: &[u8]) -> Vec<u8> {
    let Some(rest) = decoded.get(..5).filter(|s| s.eq_ignore_ascii_case(b"file:")).and(decoded.get(5..)) else {
        return decoded.to_vec();
    };
    let rest = match rest.get(..12) {
        Some(a) if a.eq_ignore_ascii_case(b"//localhost/") => &rest[11..],
        _ => rest,
    };
    let mut out = b"file://".to_vec();
    for &c in rest {
        if !(c == b'/' && out.last() == Some(&b'/') && out.len() > 7) {
            out.push(c);
        }
    }
    out
}

const PREFIX: &str = "file:///data/";

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = std::str::from_utf8(data) else { return };
    let Ok(n) = normalise(uri) else { return };
    assert_eq!(normalise(&n).as_deref(), Ok(n.as_str()), "not a fixed point");
    assert!(!n.chars().any(|c| c.is_control() || c == '\\'), "{n:?}");
    let upper = n.to_ascii_uppercase();
    assert!(!["%2F", "%5C", "%00"].iter().any(|e| upper.contains(e)), "{n:?}");
    let (du, dn) = (decode_all(uri), decode_all(&n));
    let read_same = same_file(&du).eq_ignore_ascii_case(&same_file(&dn));
    assert!(read_same, "{uri:?} and its normal form {n:?} read differently");
    let end = n.find(['?', '#']).unwrap_or(n.len());
    assert!(!n[..end].split('/').any(|s| s == "." || s == ".."), "dot segment in {n:?}");
    if n.starts_with(PREFIX) {
        let decoded = String::from_utf8_lossy(&same_file(&du)).into_owned();
        assert!(decoded.get(..PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PREFIX)), "{uri:?} widened");
        let path_end = decoded.find(['?', '#']).unwrap_or(decoded.len());
        assert!(!decoded[..path_end].split('/').any(|s| s == ".." || s == "."), "{uri:?} escapes {PREFIX}");
    }
});
