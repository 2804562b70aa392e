//! Line framing of a child's stdout and stderr: lines of at most `max`
//! bytes, across partial reads; an over-long line is skipped and reported,
//! never buffered without bound. No dependencies, so it is also fuzzed
//! (fuzz/fuzz_targets/bridge_lines.rs).

/// Splits a byte stream into lines of at most `max` bytes, across reads.
pub struct Lines {
    buf: Vec<u8>,
    max: usize,
    /// Bytes of the current over-long line seen so far (it is being skipped).
    overflow: usize,
}

#[derive(Debug, PartialEq)]
pub enum Frame {
    Line(Vec<u8>),
    TooLong(usize),
}

impl Lines {
    pub fn new(max: usize) -> Self {
        Self { buf: Vec::new(), max, overflow: 0 }
    }

    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Frame>) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let part = &chunk[..pos];
            if self.overflow > 0 || self.buf.len() + part.len() > self.max {
                out.push(Frame::TooLong(self.overflow + self.buf.len() + part.len()));
                self.buf.clear();
            } else {
                self.buf.extend_from_slice(part);
                out.push(Frame::Line(std::mem::take(&mut self.buf)));
            }
            self.overflow = 0;
            chunk = &chunk[pos + 1..];
        }
        if self.overflow > 0 || self.buf.len() + chunk.len() > self.max {
            self.overflow += self.buf.len() + chunk.len();
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut l = Lines::new(max);
        let mut out = Vec::new();
        for c in chunks {
            l.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn lines_across_partial_reads() {
        let out = feed_all(100, &[b"{\"a\":", b"1}\n{\"b\"", b":2}\n\n", b"{\"c\":3}"]);
        assert_eq!(
            out,
            vec![Frame::Line(b"{\"a\":1}".to_vec()), Frame::Line(b"{\"b\":2}".to_vec()), Frame::Line(vec![])]
        );
    }

    #[test]
    fn over_long_line_is_skipped_and_the_next_one_survives() {
        let long = [b'x'; 30];
        let out = feed_all(10, &[&long[..15], &long[15..], b"\nok\n"]);
        assert_eq!(out, vec![Frame::TooLong(30), Frame::Line(b"ok".to_vec())]);
        let out = feed_all(10, &[b"0123456789AB\nok\n"]);
        assert_eq!(out, vec![Frame::TooLong(12), Frame::Line(b"ok".to_vec())]);
    }

    #[test]
    fn a_line_of_exactly_max_passes() {
        let out = feed_all(4, &[b"ab", b"cd\n"]);
        assert_eq!(out, vec![Frame::Line(b"abcd".to_vec())]);
    }
}
