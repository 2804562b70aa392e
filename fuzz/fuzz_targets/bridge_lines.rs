//! The bridge's framing of a child's stdout on arbitrary bytes split at
//! arbitrary points. Properties: no panic; the frames do not depend on how
//! the bytes were chunked; no line holds a newline or exceeds the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../stdio-bridge/src/bridge/lines.rs"]
#[allow(dead_code)]
mod lines;
use lines::{Frame, Lines};

const MAX: usize = 64;

fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
    let mut l = Lines::new(MAX);
    let mut out = Vec::new();
    for c in chunks {
        l.feed(c, &mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let at = usize::from(split) % (bytes.len() + 1);
    let (a, b) = bytes.split_at(at);
    let whole = frames(&[bytes]);
    assert_eq!(frames(&[a, b]), whole);
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(frames(&bytewise), whole);
    for f in &whole {
        if let Frame::Line(l) = f {
            assert!(l.len() <= MAX && !l.contains(&b'\n'));
        }
    }
});
