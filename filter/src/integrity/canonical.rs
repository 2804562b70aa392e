//! The canonical text of a tool and its pin: RFC 8785 (JCS) and SHA-256.
//! Also written straight from a parse by `tools_list::scan`, which shares
//! the string, number and key-order writers here so both texts are one.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The canonical text of a JSON value: the JSON Canonicalization Scheme
/// (RFC 8785, "JCS"), so anyone can reproduce a pin with any JCS library:
/// * object keys sorted by their UTF-16 code units at every depth (not by
///   code point: `"\u{1F600}"` sorts before `"\u{FB33}"`); no whitespace;
/// * strings with the minimal escapes (`\"`, `\\`, `\b \f \n \r \t`, other
///   control characters as `\u00xx`), everything else as UTF-8, so `"\u00e9"`
///   and `"é"` are the same string;
/// * every number is an IEEE 754 double written as ECMAScript's
///   `Number.prototype.toString` writes it (`1.0` and `10E-1` are `1`, `-0`
///   is `0`, `1e21` is `1e+21`, `18446744073709551615` is
///   `18446744073709552000`).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // JCS orders keys by UTF-16 code units, which differs from
            // serde_json's (byte, i.e. code point) order above U+FFFF.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(val, out);
            }
            out.push('}');
        }
    }
}

/// A JSON number as a double (JCS treats every number as one; integers past
/// 2^53 round, as in JavaScript).
fn write_number(n: &serde_json::Number, out: &mut String) {
    let f = if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_f64().unwrap_or(0.0)
    };
    write_es_number(f, out);
}

/// ECMAScript `Number.prototype.toString(x)` for a finite double (ECMA-262
/// Number::toString): the shortest digits that read back to `x`, placed
/// in fixed notation when the decimal exponent is in (-7, 21], else
/// exponential with an explicit sign (`1e+21`, `1e-7`).
pub fn write_es_number(x: f64, out: &mut String) {
    if x == 0.0 || !x.is_finite() {
        // -0 is "0"; JSON has no NaN or Infinity (serde_json never yields them).
        out.push('0');
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    // Ryu (through serde_json) gives the shortest digits that read back to
    // x, the closest of them, ties to even, as ECMAScript requires (Rust's
    // own `{:e}` rounds such ties up: 1424953923781206.25 would end in 3).
    let (digits, n) =
        serde_json::Number::from_f64(x.abs()).map_or((String::from("0"), 1), |v| digits_and_point(&v.to_string()));
    let k = digits.len() as i64;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
}

/// A decimal numeral (`123.45`, `1.5e-7`, `1e21`) as its significant digits
/// and the position `n` of the decimal point: value = 0.digits × 10^n.
fn digits_and_point(text: &str) -> (String, i64) {
    let (mantissa, exp) = text.split_once(['e', 'E']).unwrap_or((text, "0"));
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut point = int.len() as i64 + exp.parse::<i64>().unwrap_or(0);
    let all: String = int.chars().chain(frac.chars()).collect();
    let trimmed = all.trim_start_matches('0');
    point -= (all.len() - trimmed.len()) as i64;
    let digits = trimmed.trim_end_matches('0');
    if digits.is_empty() {
        return (String::from("0"), 1);
    }
    (digits.to_string(), point)
}

/// `a` and `b` in the order of their UTF-16 code units, without encoding
/// them: UTF-8 byte order is code point order, and the two orders differ
/// only where the first differing characters are one above U+FFFF (lead
/// byte 0xF0–0xF4, a surrogate pair in UTF-16) and one in U+E000–U+FFFF
/// (lead byte 0xEE or 0xEF), which UTF-16 puts the other way round. A first
/// difference inside a character compares two characters of the same lead
/// byte, where both orders agree.
pub(crate) fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let Some(i) = x.iter().zip(y).position(|(p, q)| p != q) else { return x.len().cmp(&y.len()) };
    match (x.get(i).copied().unwrap_or(0), y.get(i).copied().unwrap_or(0)) {
        (p, q) if p >= 0xF0 && (0xEE..=0xEF).contains(&q) => std::cmp::Ordering::Less,
        (p, q) if q >= 0xF0 && (0xEE..=0xEF).contains(&p) => std::cmp::Ordering::Greater,
        (p, q) => p.cmp(&q),
    }
}

pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Copy the runs that need no escape whole; only `"`, `\\` and control
    // characters (all ASCII, so never inside a multi-byte character) break them.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(run..i).unwrap_or(""));
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        run = i + 1;
    }
    out.push_str(s.get(run..).unwrap_or(""));
    out.push('"');
}

/// SHA-256 (lowercase hex) of a tool object's canonical JSON: name,
/// description, inputSchema and every other field.
pub fn tool_hash(tool: &Value) -> String {
    hex_sha256(canonical_json(tool).as_bytes())
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lowercase hex (formatting each byte through `write!` cost
/// about a tenth of a list's inspection).
pub fn to_hex(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(digit(b >> 4));
        hex.push(digit(b & 0x0f));
    }
    hex
}
