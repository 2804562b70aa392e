//! Just enough of `text/event-stream` (WHATWG HTML §9.2) to inspect the
//! JSON-RPC messages a backend sends as events, event by event, without
//! holding the stream: [`SseRewriter`] takes chunks as they arrive, passes on
//! every complete event at once (rewritten when its data is a message to
//! inspect, byte for byte otherwise) and keeps only an unfinished event.

/// Splits the complete events off the front of `buf`: each returned block
/// ends with its blank line. Lines end in `\r\n`, `\n` or `\r`; with `eos`
/// false, a trailing `\r` is not yet a line end (a `\n` may follow).
pub fn split_events(buf: &[u8], eos: bool) -> (Vec<&[u8]>, &[u8]) {
    let mut events = Vec::new();
    let mut block_start = 0;
    let mut line_start = 0;
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        if b != b'\n' && b != b'\r' {
            i += 1;
            continue;
        }
        let Some(term) = terminator(buf, i, eos) else { break };
        let empty_line = i == line_start;
        i += term;
        line_start = i;
        if empty_line {
            events.push(buf.get(block_start..i).unwrap_or_default());
            block_start = i;
        }
    }
    (events, buf.get(block_start..).unwrap_or_default())
}

/// The length of the line terminator starting at `buf[i]` (a `\r` or `\n`):
/// 2 for `\r\n`, else 1; `None` for a `\r` that ends the buffer before the
/// stream does, since a `\n` may follow in the next chunk.
fn terminator(buf: &[u8], i: usize, eos: bool) -> Option<usize> {
    match (buf.get(i), buf.get(i + 1)) {
        (Some(b'\r'), Some(b'\n')) => Some(2),
        (Some(b'\r'), None) if !eos => None,
        _ => Some(1),
    }
}

/// The lines of an event block, without their terminators.
fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = block;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(rest.len());
        let (line, after) = rest.split_at_checked(end)?;
        let term = match after.first() {
            Some(b'\r') if after.get(1) == Some(&b'\n') => 2,
            Some(_) => 1,
            None => 0,
        };
        rest = after.get(term..).unwrap_or_default();
        Some(line)
    })
}

/// A line's field name and value (`name: value`, one leading space dropped).
fn field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':').and_then(|p| line.split_at_checked(p)) {
        Some((name, colon_value)) => {
            let v = colon_value.get(1..).unwrap_or_default();
            (name, v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (line, b""),
    }
}

/// The event's data: its `data` lines joined with `\n`; `None` without any.
pub fn event_data(block: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in lines(block) {
        let (name, value) = field(line);
        if name == b"data" && !line.is_empty() {
            match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            }
        }
    }
    data
}

/// The event with its data replaced by `data` (one line: it must not hold a
/// line break, which compact JSON never does); its other fields kept in order.
pub fn with_data(block: &[u8], data: &[u8]) -> Vec<u8> {
    rebuild(block, Some(data), false)
}

/// The event rebuilt: data replaced when given, `id` fields dropped with
/// `drop_ids`, everything else kept in order.
fn rebuild(block: &[u8], data: Option<&[u8]>, drop_ids: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + data.map_or(0, <[u8]>::len));
    let mut written = false;
    for line in lines(block) {
        if line.is_empty() || (drop_ids && field(line).0 == b"id") {
            continue;
        }
        if let (b"data", Some(data)) = (field(line).0, data) {
            if !written {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data);
                out.push(b'\n');
                written = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The UTF-8 byte order mark. A stream decoder strips one at the very start
/// of the stream (WHATWG encoding "UTF-8 decode", which the event-stream
/// parser uses), so the first line after it is read as a field line.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The largest unfinished event held by default: a backend cannot make the
/// gateway buffer without bound by never ending an event.
pub const MAX_PENDING_EVENT: usize = 8 * 1024 * 1024;

/// Why a stream could not be passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedError<E> {
    /// An event grew past the limit (bytes held) before it ended.
    TooLarge(usize),
    /// The inspection refused an event.
    Inspect(E),
}

/// Rewrites a stream event by event. `inspect` gets each event's data and
/// returns the new data when it changed. Each chunk is scanned once (the
/// scan resumes where it stopped), so a long event costs linear time.
#[derive(Debug)]
pub struct SseRewriter {
    /// The start of an event that has not ended yet.
    pending: Vec<u8>,
    /// How far `pending` has been scanned: no event ends before this.
    scanned: usize,
    /// Where the current line starts in `pending`.
    line_start: usize,
    /// The start of the stream (and any BOM) has been passed.
    started: bool,
    /// Remove `id` fields, so the client has no `Last-Event-ID` to resume
    /// the stream with.
    pub drop_ids: bool,
    /// The largest unfinished event held, in bytes.
    pub max_event: usize,
}

impl Default for SseRewriter {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            scanned: 0,
            line_start: 0,
            started: false,
            drop_ids: false,
            max_event: MAX_PENDING_EVENT,
        }
    }
}

impl SseRewriter {
    /// A rewriter that drops `id` fields (see [`SseRewriter::drop_ids`]).
    pub fn dropping_ids() -> Self {
        Self { drop_ids: true, ..Default::default() }
    }

    /// Bytes held for an unfinished event.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Scans the new bytes of `pending`; returns the end offsets of the
    /// events completed by them (each ends with its blank line).
    fn scan(&mut self, eos: bool) -> Vec<usize> {
        let buf = &self.pending;
        let mut ends = Vec::new();
        let mut i = self.scanned;
        while let Some(&b) = buf.get(i) {
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            let Some(term) = terminator(buf, i, eos) else { break };
            let empty_line = i == self.line_start;
            i += term;
            self.line_start = i;
            if empty_line {
                ends.push(i);
            }
        }
        self.scanned = i;
        ends
    }

    /// Feeds the next chunk; returns what can go downstream now. At `eos` the
    /// unfinished event is flushed too (inspected like any other, so a
    /// message cannot slip through by omitting the final blank line).
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        eos: bool,
        mut inspect: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Vec<u8>, FeedError<E>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        if !self.started {
            if !eos && self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) {
                return Ok(out); // could still be a BOM
            }
            self.started = true;
            if self.pending.starts_with(BOM) {
                out.extend_from_slice(BOM);
                self.pending.drain(..BOM.len());
            }
        }
        let mut ends = self.scan(eos);
        if eos && ends.last().copied().unwrap_or(0) < self.pending.len() {
            ends.push(self.pending.len());
        }
        let mut start = 0;
        for end in ends {
            let block = self.pending.get(start..end).unwrap_or_default();
            start = end;
            let new = match event_data(block) {
                Some(data) => inspect(&data).map_err(FeedError::Inspect)?,
                None => None,
            };
            if new.is_some() || (self.drop_ids && lines(block).any(|l| field(l).0 == b"id")) {
                out.extend_from_slice(&rebuild(block, new.as_deref(), self.drop_ids));
            } else {
                out.extend_from_slice(block);
            }
        }
        self.pending.drain(..start);
        self.scanned -= start.min(self.scanned);
        self.line_start -= start.min(self.line_start);
        if self.pending.len() > self.max_event {
            return Err(FeedError::TooLarge(self.pending.len()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_blank_lines_with_any_line_ending() {
        let (ev, rest) = split_events(b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n", false);
        assert_eq!(ev, [&b"data: a\n\n"[..], b"data: b\r\n\r\n", b"data: c\r\r"]);
        assert_eq!(rest, b"data: d\n");
        // A trailing \r may be the first half of \r\n.
        let (ev, rest) = split_events(b"data: a\r\n\r", false);
        assert!(ev.is_empty());
        assert_eq!(rest, b"data: a\r\n\r");
        let (ev, _) = split_events(b"data: a\r\n\r", true);
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn data_lines_are_joined_and_fields_kept() {
        let block = b": comment\nevent: message\nid: 7\ndata: {\"a\":\ndata:1}\n\n";
        assert_eq!(event_data(block).unwrap(), b"{\"a\":\n1}");
        assert_eq!(event_data(b"event: ping\n\n"), None);
        assert_eq!(with_data(block, b"{}"), b": comment\nevent: message\nid: 7\ndata: {}\n\n");
    }

    fn upper(d: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        Ok((d.first() == Some(&b'x')).then(|| d.to_ascii_uppercase()))
    }

    #[test]
    fn rewriter_passes_complete_events_at_once_and_holds_partial_ones() {
        let mut r = SseRewriter::default();
        assert_eq!(r.feed(b"data: keep\n\ndata: x", false, upper).unwrap(), b"data: keep\n\n");
        assert_eq!(r.feed(b"yz\n", false, upper).unwrap(), b"");
        assert_eq!(r.feed(b"\nevent: end\n\n", false, upper).unwrap(), b"data: XYZ\n\nevent: end\n\n");
        // An unterminated event at the end is inspected too.
        assert_eq!(r.feed(b"data: xa", true, upper).unwrap(), b"data: XA\n\n");
    }

    #[test]
    fn ids_can_be_dropped() {
        let mut r = SseRewriter::dropping_ids();
        let out = r.feed(b"id: 1\ndata: keep\n\nid: 2\ndata: xy\n\n: c\n\n", false, upper).unwrap();
        assert_eq!(out, b"data: keep\n\ndata: XY\n\n: c\n\n");
    }

    #[test]
    fn errors_stop_the_stream() {
        let mut r = SseRewriter::default();
        let e = r.feed(b"data: bad\n\n", false, |_| Err::<Option<Vec<u8>>, _>("no"));
        assert_eq!(e, Err(FeedError::Inspect("no")));
    }

    #[test]
    fn a_leading_bom_is_stripped_once_so_the_first_event_is_inspected() {
        let mut r = SseRewriter::default();
        // The BOM may arrive split across chunks.
        assert_eq!(r.feed(b"\xEF", false, upper).unwrap(), b"");
        assert_eq!(r.feed(b"\xBB", false, upper).unwrap(), b"");
        assert_eq!(r.feed(b"\xBFdata: xa\n\n", false, upper).unwrap(), b"\xEF\xBB\xBFdata: XA\n\n");
        // Only at the start of the stream: a later BOM is part of a field name.
        assert_eq!(r.feed(b"\xEF\xBB\xBFdata: xb\n\n", false, upper).unwrap(), b"\xEF\xBB\xBFdata: xb\n\n");
        let mut r = SseRewriter::default();
        let twice = b"\xEF\xBB\xBF\xEF\xBB\xBFdata: xb\n\n";
        assert_eq!(r.feed(twice, false, upper).unwrap(), twice, "one BOM is stripped, not two");
    }

    #[test]
    fn an_event_that_never_ends_is_refused_past_the_cap() {
        let mut r = SseRewriter { max_event: 1000, ..Default::default() };
        assert_eq!(r.feed(b"data: keep\n\ndata: ", false, upper).unwrap(), b"data: keep\n\n");
        for _ in 0..9 {
            assert!(r.feed(&[b'a'; 100], false, upper).is_ok());
        }
        assert_eq!(r.feed(&[b'a'; 100], false, upper), Err(FeedError::TooLarge(1006)));
    }

    #[test]
    fn split_anywhere_gives_the_same_output() {
        let stream: &[u8] = b"\xEF\xBB\xBFid: 1\r\ndata: xa\r\n\r\n: c\rdata: keep\r\rdata: x\ndata: y\n\nevent: e\n";
        let whole = SseRewriter::default().feed(stream, true, upper).unwrap();
        for cut in 0..stream.len() {
            for cut2 in cut..stream.len() {
                let mut r = SseRewriter::default();
                let mut out = r.feed(&stream[..cut], false, upper).unwrap();
                out.extend(r.feed(&stream[cut..cut2], false, upper).unwrap());
                out.extend(r.feed(&stream[cut2..], true, upper).unwrap());
                assert_eq!(out, whole, "cut at {cut}, {cut2}");
            }
        }
    }
}
