//! Child output on its way to a log. A stdio child is not trusted: what it
//! writes (stderr lines, method names, ids, non-JSON junk) must never be able
//! to start a line of its own in mcpx's output — where it could pass for an
//! audit line or a gateway message — nor make one log line huge. So every
//! control character (newline, carriage return, escape, the C1 range, the
//! Unicode line and paragraph separators, bidi overrides) is written as
//! `\u{XXXX}`, invalid UTF-8 as U+FFFD, and the text is cut to a length.

/// Longest log text taken from one stderr line of a child (characters).
pub const STDERR_CHARS: usize = 2000;
/// Longest method name or id shown (and remembered) from a child.
pub const NAME_CHARS: usize = 120;

/// `bytes` as one safe log fragment of at most `max` characters (plus a
/// note saying how long the original was, when it was cut).
pub fn for_log(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(max) + 16);
    for (shown, c) in text.chars().enumerate() {
        if shown >= max {
            out.push_str(&format!("…({} bytes in all)", bytes.len()));
            return out;
        }
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escapes_cannot_start_a_line() {
        let forged = b"x\n{\"decision\":\"allow\"}\r\x1b[2K\xe2\x80\xa8done";
        let s = for_log(forged, 1000);
        assert!(!s.chars().any(|c| c.is_control() || c == '\u{2028}'), "{s}");
        assert_eq!(s, "x\\u{000a}{\"decision\":\"allow\"}\\u{000d}\\u{001b}[2K\\u{2028}done");
    }

    #[test]
    fn long_text_is_cut_and_bad_utf8_replaced() {
        let s = for_log(&[b'a'; 5000], 10);
        assert_eq!(s, "aaaaaaaaaa…(5000 bytes in all)");
        assert_eq!(for_log(b"caf\xe9", 10), "caf\u{fffd}");
        assert_eq!(for_log(b"ok", 2), "ok");
    }
}
