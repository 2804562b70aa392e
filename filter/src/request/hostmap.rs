//! Header maps as the proxy-wasm host hands them over, host-independent so
//! they are unit-tested and fuzzed natively (`fuzz/fuzz_targets/header_map.rs`).
//!
//! Wire format (proxy-wasm ABI 0.2): a little-endian `u32` count N, then N
//! pairs of `u32` lengths (name, value), then each name and value followed by
//! one NUL byte. Envoy passes header values as the client sent them, so a
//! value need not be UTF-8 (`X-A: caf\xe9` is valid HTTP/1.1 obs-text): the
//! SDK's `String::from_utf8(..).unwrap()` on such a value panics and kills the
//! VM of the worker. Here every byte is bounds-checked and nothing is assumed
//! to be text until [`screen`] decides what the filter reads.

/// One header as bytes: (name, value).
pub type BytePair = (Vec<u8>, Vec<u8>);

/// Why a serialised map could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The buffer ends before the count, the length table or an entry.
    Truncated,
    /// An entry is not followed by its NUL byte.
    MissingNul,
    /// The count promises more pairs than the buffer could hold.
    BadCount,
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapError::Truncated => "header map truncated",
            MapError::MissingNul => "header map entry without its NUL terminator",
            MapError::BadCount => "header map count larger than the map",
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<usize, MapError> {
    let end = at.checked_add(4).ok_or(MapError::Truncated)?;
    let b: [u8; 4] = bytes.get(at..end).and_then(|s| s.try_into().ok()).ok_or(MapError::Truncated)?;
    usize::try_from(u32::from_le_bytes(b)).map_err(|_| MapError::Truncated)
}

/// Reads a serialised map. An empty buffer is an empty map (the host sends
/// nothing for a map without entries).
pub fn decode(bytes: &[u8]) -> Result<Vec<BytePair>, MapError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = u32_at(bytes, 0)?;
    // Each pair needs 8 bytes of lengths and 2 NULs: a count that cannot fit
    // is refused before anything is allocated for it.
    if count.checked_mul(10).is_none_or(|need| need > bytes.len().saturating_sub(4)) {
        return Err(MapError::BadCount);
    }
    let mut data = 4 + count * 8;
    let mut out = Vec::with_capacity(count);
    let mut take = |len: usize| -> Result<Vec<u8>, MapError> {
        let end = data.checked_add(len).ok_or(MapError::Truncated)?;
        let v = bytes.get(data..end).ok_or(MapError::Truncated)?.to_vec();
        if bytes.get(end) != Some(&0) {
            return Err(MapError::MissingNul);
        }
        data = end + 1;
        Ok(v)
    };
    for i in 0..count {
        let lens = 4 + i * 8;
        let (name_len, value_len) = (u32_at(bytes, lens)?, u32_at(bytes, lens + 4)?);
        let name = take(name_len)?;
        let value = take(value_len)?;
        out.push((name, value));
    }
    Ok(out)
}

/// Serialises pairs for the host (local replies, dispatched calls). `None`
/// when a length does not fit the format's `u32` (never for real headers).
pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Option<Vec<u8>> {
    let size = pairs.iter().try_fold(4usize, |acc, (n, v)| {
        acc.checked_add(n.as_ref().len())?.checked_add(v.as_ref().len())?.checked_add(10)
    })?;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32::try_from(pairs.len()).ok()?.to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&u32::try_from(n.as_ref().len()).ok()?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.as_ref().len()).ok()?.to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    Some(out)
}

/// Request headers the gateway reads (routing, auth, content checks, CORS,
/// the MCP routing headers) or strips (its internal `x-mcpx-*` headers).
/// A value of one of these that is not UTF-8 cannot be decided on, so the
/// request is refused; any other header is opaque to the gateway and passes.
const READ_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "accept",
    "origin",
    "last-event-id",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Name prefixes of headers the gateway reads: pseudo-headers (`:path`…),
/// every `Mcp-*` (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`,
/// `MCP-Protocol-Version`, `Mcp-Session-Id`) and its own internal headers.
const READ_PREFIXES: &[&str] = &[":", "mcp-", crate::names::INTERNAL_HEADER_PREFIX];

/// Whether the gateway reads or strips this request header. `extra` holds
/// the configured credential header (e.g. `x-api-key`).
pub fn is_read(name: &str, extra: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    READ_HEADERS.contains(&lower.as_str())
        || extra.iter().any(|e| e.eq_ignore_ascii_case(&lower))
        || READ_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// A request the filter will not decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotText {
    /// The header's name (lossily decoded, for the error message).
    pub name: String,
}

/// Turns request headers into the text the gateway decides on.
///
/// - a name that is not UTF-8 refuses the request (Envoy's codecs accept
///   only tokens, so this is a host that misbehaves; nothing can be matched
///   by name, the internal-header strip included);
/// - a header the gateway reads ([`is_read`]) whose value is not UTF-8
///   refuses the request: no decision on bytes the gateway cannot read;
/// - any other value that is not UTF-8 is kept, with its name, as lossy text
///   (U+FFFD): the gateway never reads it, Envoy forwards the original bytes.
pub fn screen(pairs: Vec<BytePair>, extra: &[&str]) -> Result<Vec<(String, String)>, NotText> {
    let mut out = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let name = match String::from_utf8(name) {
            Ok(n) => n,
            Err(e) => return Err(NotText { name: String::from_utf8_lossy(e.as_bytes()).into_owned() }),
        };
        let value = match String::from_utf8(value) {
            Ok(v) => v,
            Err(_) if is_read(&name, extra) => return Err(NotText { name }),
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&[u8], &[u8])]) -> Vec<BytePair> {
        p.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
    }

    #[test]
    fn round_trip_with_non_utf8_values() {
        let p = pairs(&[(b":path", b"/mcp/demo"), (b"x-a", b"caf\xe9"), (b"empty", b"")]);
        let wire = encode(&p).unwrap();
        assert_eq!(decode(&wire).unwrap(), p);
        assert_eq!(decode(&[]).unwrap(), Vec::<BytePair>::new());
        assert_eq!(decode(&encode::<&[u8], &[u8]>(&[]).unwrap()).unwrap(), Vec::<BytePair>::new());
    }

    #[test]
    fn malformed_maps_are_errors_not_panics() {
        let wire = encode(&pairs(&[(b"a", b"b")])).unwrap();
        for cut in 0..wire.len() {
            assert!(decode(&wire[..cut]).is_err() || cut == 0, "cut at {cut}");
        }
        let mut no_nul = wire.clone();
        *no_nul.last_mut().unwrap() = b'x';
        assert_eq!(decode(&no_nul), Err(MapError::MissingNul));
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(MapError::BadCount));
        let mut huge_len = wire;
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge_len), Err(MapError::Truncated));
    }

    #[test]
    fn read_headers_must_be_text_opaque_ones_pass() {
        let bad = |name: &[u8]| screen(pairs(&[(b":path", b"/mcp/demo"), (name, b"caf\xe9")]), &["x-api-key"]);
        for name in [
            &b"authorization"[..],
            b"Content-Type",
            b"mcp-method",
            b"Mcp-Param-region",
            b"MCP-Protocol-Version",
            b"mcp-session-id",
            b"origin",
            b"accept",
            b"x-api-key",
            b"x-mcpx-client",
            b":authority",
            b"host",
        ] {
            let name_text = String::from_utf8(name.to_vec()).unwrap();
            assert_eq!(bad(name), Err(NotText { name: name_text }));
        }
        let ok = bad(b"x-a").unwrap();
        assert_eq!(ok[1], ("x-a".to_string(), "caf\u{fffd}".to_string()));
        assert!(screen(pairs(&[(b"x-\xff", b"v")]), &[]).is_err());
    }
}
