//! The proxy-wasm header-map wire format and the request-header screen
//! (`mcpx_filter::request::hostmap`), on arbitrary bytes from the host.
//! Properties: decoding never panics; whatever decodes re-encodes to the
//! bytes it came from and decodes again to the same pairs; the screen never hands
//! the gateway a header it reads (`is_read`) that was not UTF-8 as sent,
//! and keeps every name (so internal headers can still be stripped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::request::hostmap::{decode, encode, is_read, screen};

const EXTRA: &[&str] = &["x-api-key"];

fuzz_target!(|data: &[u8]| {
    // 1. Arbitrary bytes as a serialised map.
    if let Ok(pairs) = decode(data) {
        let wire = encode(&pairs).expect("lengths fit u32");
        if !data.is_empty() {
            // Bytes after the last entry are ignored (the host sends none).
            assert!(data.starts_with(&wire), "a decoded map re-encodes to the bytes it came from");
        }
        assert_eq!(decode(&wire).expect("own encoding decodes"), pairs);
        check_screen(pairs);
    }
    // 2. The same bytes as "name: value" lines, so the screen sees many
    //    well-formed maps with hostile values.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = data
        .split(|b| *b == b'\n')
        .filter_map(|l| {
            let i = l.windows(2).position(|w| w == b": ")?;
            Some((l[..i].to_vec(), l[i + 2..].to_vec()))
        })
        .collect();
    let wire = encode(&pairs).expect("lengths fit u32");
    assert_eq!(decode(&wire).expect("own encoding decodes"), pairs);
    check_screen(pairs);
});

fn check_screen(pairs: Vec<(Vec<u8>, Vec<u8>)>) {
    let sent = pairs.clone();
    match screen(pairs, EXTRA) {
        Ok(text) => {
            assert_eq!(text.len(), sent.len(), "every header kept");
            for ((name, value), (n, v)) in text.iter().zip(&sent) {
                assert_eq!(name.as_bytes(), n.as_slice(), "names kept exactly");
                if is_read(name, EXTRA) || std::str::from_utf8(v).is_ok() {
                    assert_eq!(value.as_bytes(), v.as_slice(), "a header the gateway reads is exactly as sent");
                }
            }
        }
        Err(bad) => {
            let refused = sent.iter().any(|(n, v)| match std::str::from_utf8(n) {
                Err(_) => true,
                Ok(n) => n == bad.name && is_read(n, EXTRA) && std::str::from_utf8(v).is_err(),
            });
            assert!(refused, "refused only for a non-UTF-8 name or a read header that is not text");
        }
    }
}
