//! Audit events the `mcpx` process writes itself (gateway start; config
//! reloads accepted or rejected), as JSON lines in the same stream as the
//! per-request lines Envoy writes (`audit.output`: stdout, stderr or a file).
//!
//! Every line has `time` (UTC, RFC 3339 with milliseconds) and `event`;
//! per-request lines have `event: "request"` (docs/operations.md).

use crate::error::{Error, Result};
use mcpx_filter::config::AuditConfig;
use serde_json::{Map, Value};
use std::io::Write;

/// Writes one event line. `fields` (a JSON object) is merged after `time`
/// and `event`. Never include secrets in `fields`.
pub fn event(config: &AuditConfig, event: &str, fields: Value) -> Result<()> {
    if !config.enabled {
        return Ok(());
    }
    let mut line = Map::new();
    line.insert("time".into(), Value::String(rfc3339_now()));
    line.insert("event".into(), Value::String(event.into()));
    if let Value::Object(f) = fields {
        line.extend(f);
    }
    // One write call per line, so lines from Envoy and from us never interleave.
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    let result = match config.output.as_str() {
        "stdout" => std::io::stdout().lock().write_all(text.as_bytes()),
        "stderr" => std::io::stderr().lock().write_all(text.as_bytes()),
        path => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes())),
    };
    result.map_err(|e| Error::io_other(format!("cannot write the audit log {}: {e}", config.output)))
}

/// The current UTC time as `2026-01-02T03:04:05.678Z`.
pub fn rfc3339_now() -> String {
    rfc3339(mcpx_filter::clock::now_ms())
}

fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_550_933_209), "2026-11-24T20:08:53.209Z");
    }

    #[test]
    fn events_are_json_lines_in_the_audit_file() {
        let dir = std::env::temp_dir().join(format!("mcpx-audit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let config = AuditConfig { enabled: true, output: path.display().to_string() };
        event(&config, "reload", serde_json::json!({"result": "accepted"})).unwrap();
        event(&config, "reload", serde_json::json!({"result": "rejected", "error": "x"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["event"], "reload");
        assert_eq!(lines[1]["result"], "rejected");
        let off = AuditConfig { enabled: false, ..config };
        event(&off, "reload", Value::Null).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(dir).ok();
    }
}
