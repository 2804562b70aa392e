//! Resource URIs in the one form `allow_resources` / `deny_resources`
//! prefixes are compared in (docs/policy.md "Resources").
//!
//! A prefix rule on raw text is easy to walk around: `file:///data/../etc`,
//! `file:///dat%61/`, `FILE:///etc`, `https://EVIL.example/`. So, when a
//! resource rule applies, the URI is normalised the way RFC 3986 §6.2.2 allows
//! (scheme and host lowercased, percent-encoded unreserved characters decoded,
//! remaining escapes uppercased), and URIs a backend might resolve differently
//! from the text are refused outright (fail closed): `.` or `..` segments
//! (also when percent-encoded), encoded `/`, `\` or NUL, backslashes, control
//! characters and malformed escapes.

/// The normalised URI, or why it is refused.
pub fn normalise(uri: &str) -> Result<String, String> {
    if let Some(c) = uri.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!("it contains {c:?}"));
    }
    let decoded = decode_unreserved(uri)?;
    for bad in ["%2F", "%5C", "%00"] {
        if decoded.contains(bad) {
            return Err(format!("it contains the encoded character {bad}"));
        }
    }
    let (scheme, rest) = match decoded.split_once(':') {
        Some((s, r)) if is_scheme(s) => (Some(s.to_ascii_lowercase()), r),
        _ => (None, decoded.as_str()),
    };
    // Path (and authority) end at the query or fragment.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (hier, tail) = rest.split_at(end);
    if hier.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("it contains a \".\" or \"..\" path segment".into());
    }
    let hier = match hier.strip_prefix("//") {
        Some(after) => {
            let auth_end = after.find('/').unwrap_or(after.len());
            let (auth, path) = after.split_at(auth_end);
            // Hosts are case-insensitive; user info is not, so it is kept.
            let auth = match auth.rsplit_once('@') {
                Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
                None => auth.to_ascii_lowercase(),
            };
            format!("//{auth}{path}")
        }
        None => hier.to_string(),
    };
    Ok(match scheme {
        Some(s) => format!("{s}:{hier}{tail}"),
        None => format!("{hier}{tail}"),
    })
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Decodes `%XX` of unreserved characters (ALPHA DIGIT - . _ ~) and
/// uppercases the hex of every other escape. A `%` without two hex digits is
/// an error.
fn decode_unreserved(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b.get(i) != Some(&b'%') {
            let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&s[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err("it contains a malformed percent-escape".into());
        };
        let byte = (hi * 16 + lo) as u8;
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        assert_eq!(normalise("file:///data/a.txt").unwrap(), "file:///data/a.txt");
        assert_eq!(normalise("FILE:///data/a").unwrap(), "file:///data/a");
        assert_eq!(normalise("file:///dat%61/%7e").unwrap(), "file:///data/~");
        assert_eq!(normalise("https://EXAMPLE.com/A?q=..").unwrap(), "https://example.com/A?q=..");
        assert_eq!(normalise("https://Bob@EXAMPLE.com/").unwrap(), "https://Bob@example.com/");
        assert_eq!(normalise("file:///a%20b%c3%a9").unwrap(), "file:///a%20b%C3%A9");
        assert_eq!(normalise("memo://x").unwrap(), "memo://x");
    }

    #[test]
    fn refusals() {
        for uri in [
            "file:///data/../etc/passwd",
            "file:///data/./x",
            "file:///data/%2e%2e/etc",
            "file:///data/%2E./etc",
            "file:///data/.%2e",
            "file:///data%2f..%2fetc",
            "file:///data\\..\\etc",
            "file:///data/%00",
            "file:///data/%zz",
            "file:///data/%5c",
            "file:///data/\n",
            "..",
        ] {
            assert!(normalise(uri).is_err(), "{uri}");
        }
    }
}
