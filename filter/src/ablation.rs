//! Benchmark-only switches that turn parts of the request path off, so
//! `make bench` can measure what each part costs inside Envoy (the ablation
//! table in docs/performance.md).
//!
//! Compiled in only with the cargo feature `bench-ablation`, which the
//! shipped `.wasm` never has: without it [`skip`] is a constant `false` and
//! every check in the glue folds away. With it, the plugin configuration's
//! first line may be the YAML comment `# mcpx-bench-skip: part,part`
//! (a comment, so the config parser ignores it either way).

/// A part of the request path that a benchmark build can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Part {
    /// Everything: the request headers callback returns at once (what is
    /// left is the context and the callbacks themselves).
    All = 1,
    /// Everything after reading the request headers.
    AfterHeaders = 1 << 1,
    /// Everything after buffering and copying out the body.
    AfterBody = 1 << 2,
    /// Everything after parsing the body (policy, auth, outcome).
    AfterParse = 1 << 3,
    /// The audit attributes (filter-state properties).
    Attributes = 1 << 4,
    /// The rate-limit key and hit-count headers.
    RateLimitHeaders = 1 << 5,
    /// Metrics in `on_log`, and the clock reads that time the request.
    Metrics = 1 << 6,
    /// The whole response phase (answer inspection, Envoy-reply envelopes).
    Response = 1 << 7,
}

impl Part {
    const ALL: [(Part, &'static str); 8] = [
        (Part::All, "all"),
        (Part::AfterHeaders, "after_headers"),
        (Part::AfterBody, "after_body"),
        (Part::AfterParse, "after_parse"),
        (Part::Attributes, "attributes"),
        (Part::RateLimitHeaders, "rate_limit_headers"),
        (Part::Metrics, "metrics"),
        (Part::Response, "response"),
    ];
}

const MARKER: &str = "# mcpx-bench-skip:";

/// The parts named on the config's marker line (unknown names are ignored:
/// this is a benchmark aid, not a user setting).
pub fn parse(config_text: &str) -> u32 {
    let Some(line) = config_text.lines().next().and_then(|l| l.strip_prefix(MARKER)) else { return 0 };
    line.split(',')
        .filter_map(|name| Part::ALL.iter().find(|(_, n)| *n == name.trim()).map(|(p, _)| *p as u32))
        .fold(0, |acc, bit| acc | bit)
}

#[cfg(feature = "bench-ablation")]
mod state {
    use std::cell::Cell;
    thread_local! {
        pub static SKIPS: Cell<u32> = const { Cell::new(0) };
    }
}

/// Takes the switches from the plugin configuration (each VM configures itself).
#[cfg(feature = "bench-ablation")]
pub fn configure(config_text: &str) {
    state::SKIPS.with(|s| s.set(parse(config_text)));
}

#[cfg(not(feature = "bench-ablation"))]
#[inline(always)]
pub fn configure(_config_text: &str) {}

/// Whether the benchmark build was told to leave `part` out.
#[cfg(feature = "bench-ablation")]
pub fn skip(part: Part) -> bool {
    state::SKIPS.with(|s| s.get() & part as u32 != 0)
}

#[cfg(not(feature = "bench-ablation"))]
#[inline(always)]
pub fn skip(_part: Part) -> bool {
    false
}

/// In a benchmark build told to stop after the body (or after parsing
/// it): does that much and says to let the request go on unchecked.
pub fn stops_after_body(body: &[u8]) -> bool {
    if skip(Part::AfterBody) {
        return true;
    }
    if skip(Part::AfterParse) {
        let _ = crate::request::jsonrpc::parse_body(body);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_first_line_marker() {
        assert_eq!(
            parse("# mcpx-bench-skip: metrics, response\nservers: []\n"),
            Part::Metrics as u32 | Part::Response as u32
        );
        assert_eq!(parse("servers: []\n# mcpx-bench-skip: metrics\n"), 0);
        assert_eq!(parse("# mcpx-bench-skip: nonsense\n"), 0);
    }

    #[cfg(not(feature = "bench-ablation"))]
    #[test]
    fn the_shipped_build_never_skips() {
        configure("# mcpx-bench-skip: all\n");
        assert!(!skip(Part::All));
    }
}
