//! Strict base64url without padding (RFC 7515 §2), for JWT segments and JWK
//! numbers. Strict so one token has exactly one encoding: padding, the
//! standard alphabet, whitespace and non-zero trailing bits are refused.

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    } as u32)
}

pub fn decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let produced = match chunk.len() {
            4 => 3,
            3 => 2,
            _ => 1,
        };
        // Bits below the last whole byte must be zero (canonical encoding).
        let unused_bits = 24 - 8 * produced;
        if acc & ((1 << unused_bits) - 1) != 0 {
            return None;
        }
        let b = acc.to_be_bytes();
        out.extend_from_slice(b.get(1..1 + produced)?);
    }
    Some(out)
}

#[cfg(test)]
pub fn encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= (b as u32) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(A[((acc >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xfb, 0xff, 0xfe]] {
            assert_eq!(decode(&encode(data)).unwrap(), data);
        }
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert!(decode("Zm9v=").is_none(), "padding");
        assert!(decode("Zm+v").is_none(), "standard alphabet");
        assert!(decode("Zm9 v").is_none(), "whitespace");
        assert!(decode("Zg").is_some() && decode("Zh").is_none(), "non-canonical trailing bits");
        assert!(decode("Z").is_none(), "impossible length");
    }
}
