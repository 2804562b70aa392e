//! The `regex` argument rule: a pattern taken as character runs must
//! answer exactly what regex-lite answers, for every value. Input: the
//! pattern, a NUL byte, the value (both UTF-8; anything else is skipped).
//! Patterns regex-lite refuses are config errors and never reach a match.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::policy::pattern::Pattern;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else { return };
    let (Ok(source), Ok(value)) = (std::str::from_utf8(&data[..split]), std::str::from_utf8(&data[split + 1..])) else {
        return;
    };
    let Ok(pattern) = Pattern::new(source) else { return };
    assert_eq!(
        pattern.is_match(value),
        pattern.regex_lite_match(value),
        "pattern {source:?} (runs: {}) value {value:?}",
        pattern.is_runs()
    );
});
