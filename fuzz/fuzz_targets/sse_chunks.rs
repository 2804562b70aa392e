//! The SSE rewriter (tools/list answered as text/event-stream) on arbitrary
//! streams cut at arbitrary points.
//! Properties: no panic; the same events are inspected and the same bytes go
//! downstream however the stream is split into chunks (whole, in two at a
//! fuzzed point, byte by byte); nothing is held back at the end of the
//! stream; no `id` field survives (no Last-Event-ID replay around
//! inspection).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::response::sse::SseRewriter;

/// Runs a stream through the rewriter: (downstream bytes, data inspected).
fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut rw = SseRewriter::dropping_ids();
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let mut inspect = |d: &[u8]| -> Result<Option<Vec<u8>>, ()> {
        seen.push(d.to_vec());
        // Rewrite JSON-looking data (one line, as compact JSON is), keep the rest.
        Ok((d.first() == Some(&b'{')).then(|| format!("{{\"inspected\":{}}}", d.len()).into_bytes()))
    };
    for c in chunks {
        out.extend(rw.feed(c, false, &mut inspect).expect("never fails"));
    }
    out.extend(rw.feed(b"", true, &mut inspect).expect("never fails"));
    (out, seen)
}

/// Field names of every line (line ends: \r\n, \n or \r).
fn field_names(out: &[u8]) -> Vec<Vec<u8>> {
    let text = out.split(|&b| b == b'\n' || b == b'\r');
    text.map(|l| l.split(|&b| b == b':').next().unwrap_or_default().to_vec()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let at = usize::from(split) * stream.len() / 256;
    let (a, b) = stream.split_at(at.min(stream.len()));
    let whole = run(&[stream]);
    assert_eq!(run(&[a, b]), whole, "splitting in two changed the events");
    // Byte by byte (at most 64 chunks for long streams, to keep a run short).
    let bytewise: Vec<&[u8]> = stream.chunks(1 + stream.len() / 64).collect();
    assert_eq!(run(&bytewise), whole, "byte-by-byte chunks changed the events");
    assert!(!field_names(&whole.0).iter().any(|f| f == b"id"), "an id field reached the client");
});
