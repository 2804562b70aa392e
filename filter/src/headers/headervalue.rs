//! Header values of the 2026-07-28 Streamable HTTP transport: a value is
//! sent as is, or inside the `=?base64?…?=` sentinel when it is not plain
//! visible ASCII. A leaf, shared by the routing-header check (`mcpheaders`)
//! and the `Mcp-Param-*` check (`paramheaders`).

/// A header value as sent, or the text inside the `=?base64?…?=` sentinel.
/// Malformed or non-canonical base64 and invalid UTF-8 give `None`, so a
/// corrupt header never matches by accident.
pub fn decode_value(v: &str) -> Option<String> {
    let Some(payload) = v.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) else {
        return Some(v.to_string());
    };
    String::from_utf8(base64_decode(payload)?).ok()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Strict standard base64 (padded, canonical trailing bits).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n: u32 = 0;
        for &b in quad.get(..4 - pad)? {
            let d = B64.iter().position(|&c| c == b)? as u32;
            n = (n << 6) | d;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Canonical: the bits the padding drops must be zero.
        if (pad == 1 && three[2] != 0) || (pad == 2 && three[1] != 0) {
            return None;
        }
        out.extend_from_slice(three.get(..3 - pad)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        for bad in ["aGk", "a===", "aG=k", "aGl=", "****"] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }
}
