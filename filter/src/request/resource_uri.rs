//! Resource URIs in the one form `allow_resources` / `deny_resources`
//! prefixes are compared in (docs/policy.md "Resources").
//!
//! A prefix rule on raw text is easy to walk around: `file:///data/../etc`,
//! `file:///dat%61/`, `FILE:///etc`, `https://EVIL.example/`. So, when a
//! resource rule applies, the URI is normalised the way RFC 3986 §6.2.2 allows
//! (scheme and host lowercased, percent-encoded unreserved characters decoded,
//! remaining escapes uppercased), and URIs a backend might resolve differently
//! from the text are refused outright (fail closed): `.` or `..` segments
//! anywhere, also after `?` or `#` and when percent-encoded (a backend that
//! treats the URI as a path resolves `/a?/../b` to `/b`), encoded `/`, `\` or
//! NUL, backslashes, control characters and malformed escapes.
//!
//! `file:` URIs have one normal form, `file:///absolute/path`: the spellings
//! `file:/p`, `file://localhost/p` and `file:////p` name the same file, and so
//! do empty path segments (`/data//secret` is `/data/secret` to the OS), so
//! they are normalised to it. A `file:` URI naming another host, a relative
//! path, or carrying `?` or `#` (which backends either strip or keep as part
//! of the file name) is refused. Normalising is idempotent and never widens:
//! the normal form names the same file as the original.

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
    // A dot segment anywhere (path, query or fragment) is refused: a backend
    // that treats the whole URI as a path would resolve it.
    if rest.split(['/', '?', '#']).any(|seg| seg == "." || seg == "..") {
        return Err("it contains a \".\" or \"..\" segment".into());
    }
    if scheme.as_deref() == Some("file") {
        return normalise_file(rest);
    }
    // Path (and authority) end at the query or fragment.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (hier, tail) = rest.split_at(end);
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

/// The one form of a `file:` URI (after the scheme): `file:///` and the
/// absolute path with empty segments removed.
fn normalise_file(rest: &str) -> Result<String, String> {
    if rest.contains(['?', '#']) {
        return Err("it is a file: URI with \"?\" or \"#\", which backends resolve differently".into());
    }
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let auth_end = after.find('/').unwrap_or(after.len());
            let (auth, path) = after.split_at(auth_end);
            if !auth.is_empty() && !auth.eq_ignore_ascii_case("localhost") {
                return Err(format!(
                    "it is a file: URI naming the host {auth:?}; only local files (file:///path) are accepted"
                ));
            }
            if path.is_empty() {
                "/"
            } else {
                path
            }
        }
        None => rest,
    };
    if !path.starts_with('/') {
        return Err("it is a file: URI without an absolute path (use file:///path)".into());
    }
    let mut out = String::with_capacity(path.len() + 7);
    out.push_str("file://");
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg);
    }
    if path.ends_with('/') || out.len() == "file://".len() {
        out.push('/');
    }
    Ok(out)
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
        assert_eq!(normalise("memo://x?y#z").unwrap(), "memo://x?y#z");
    }

    #[test]
    fn file_uris_have_one_normal_form() {
        for uri in [
            "file:///data/secret/key",
            "file:///data//secret/key",
            "file://localhost/data/secret/key",
            "file://LOCALHOST/data/secret/key",
            "file:/data/secret/key",
            "file:////data/secret/key",
            "FILE:///data/secret///key",
            "file:///dat%61/secret/key",
            "file:///data/secret/%6Bey",
        ] {
            assert_eq!(normalise(uri).unwrap(), "file:///data/secret/key", "{uri}");
        }
        assert_eq!(normalise("file:///data/").unwrap(), "file:///data/");
        assert_eq!(normalise("file:///data//").unwrap(), "file:///data/");
        assert_eq!(normalise("file://localhost").unwrap(), "file:///");
        assert_eq!(normalise("file:///").unwrap(), "file:///");
        assert_eq!(normalise("file:///a%20b").unwrap(), "file:///a%20b");
    }

    #[test]
    fn normalising_is_idempotent() {
        for uri in [
            "file:///data//secret/key",
            "file:/x/",
            "file://localhost",
            "FILE:////a//b//",
            "https://EXAMPLE.com/A?q=..",
            "file:///dat%61/%7e",
            "memo://x",
            "file:///a%20b%c3%a9",
        ] {
            let once = normalise(uri).unwrap();
            assert_eq!(normalise(&once).unwrap(), once, "{uri}");
        }
    }

    #[test]
    fn file_refusals() {
        for uri in [
            "file:///data/secret/key?x",
            "file:///data/public?/../secret/key",
            "file:///data/public#/../secret/key",
            "file:///data/public#x",
            "file://evil.example/data/secret/key",
            "file://localhost:80/data/secret/key",
            "file:data/secret/key",
            "file:",
            "https://h/a?/../b",
            "https://h/a#..",
            "memo://x/%2e%2e",
        ] {
            assert!(normalise(uri).is_err(), "{uri}");
        }
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
