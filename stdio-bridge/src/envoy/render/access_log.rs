//! The audit log: Envoy's access loggers, writing one JSON line per MCP
//! request (and one per integrity event) from the filter's `mcp_*`
//! attributes (filter state).

use mcpx_filter::config::Config;
use mcpx_filter::names::attr;
use serde_json::{json, Value};

/// The access-log command for an attribute the filter sets, by its short
/// name (`decision` for `mcp_decision`).
pub(super) fn filter_state(short: &str) -> String {
    format!("%FILTER_STATE({}:PLAIN)%", attr::filter_state_key(&format!("mcp_{short}")))
}

/// The audit log (docs/operations.md): one JSON line per MCP request, written by Envoy
/// from the attributes the filter sets as filter state.
pub fn audit_format() -> Value {
    let fs = filter_state;
    json!({
        "time": "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%",
        "event": "request",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "server": fs("server"),
        "method": fs("method"),
        "tool": fs("tool"),
        "client": fs("client"),
        "client_ip": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "decision": fs("decision"),
        "reason": fs("reason"),
        "integrity": fs("integrity"),
        "http_method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "status": "%RESPONSE_CODE%",
        "latency_ms": "%DURATION%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "flags": "%RESPONSE_FLAGS%",
    })
}

/// The integrity event (docs/operations.md): one more line for a request on
/// whose answer the filter found integrity violations, written by the same
/// logger when the request ends. Envoy logs once per request and per logger,
/// so the violations of one answer are listed in one event.
pub fn integrity_event_format() -> Value {
    let fs = filter_state;
    json!({
        "time": "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%",
        "event": "integrity_violation",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "server": fs("server"),
        "method": fs("method"),
        "client": fs("client"),
        "violations": fs("integrity"),
        "action": fs("integrity_action"),
    })
}

pub fn access_log(config: &Config) -> Value {
    if !config.audit.enabled {
        return json!([]);
    }
    let present = |name: &str| format!("'{}' in filter_state", attr::filter_state_key(name));
    let request = logger(config, audit_format(), &present(attr::DECISION));
    let integrity = logger(config, integrity_event_format(), &present(attr::INTEGRITY_ACTION));
    json!([request, integrity])
}

/// One access logger to the audit output, for the requests `expression`
/// (CEL) selects.
fn logger(config: &Config, fields: Value, expression: &str) -> Value {
    let format = json!({ "json_format": fields });
    let (name, typed) = match config.audit.output.as_str() {
        "stdout" => (
            "envoy.access_loggers.stdout",
            json!({ "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": format }),
        ),
        "stderr" => (
            "envoy.access_loggers.stderr",
            json!({ "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
                    "log_format": format }),
        ),
        path => (
            "envoy.access_loggers.file",
            json!({ "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": path, "log_format": format }),
        ),
    };
    json!({
        "name": name,
        // Request lines: only MCP requests (the filter sets a decision for
        // each of them). Integrity events: only requests with violations.
        "filter": { "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        } },
        "typed_config": typed,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_access_log_reads_only_attributes_the_filter_sets() {
        // The config of `the_renderer_and_the_filter_label_a_tool_alike`, where this check began.
        let config = Config::from_yaml("servers:\n  - name: a\n    url: http://h:1\n", Mode::Gateway).unwrap();
        // Every attribute the access log and the tracer read is one the filter sets.
        let text =
            serde_json::to_string(&json!([audit_format(), integrity_event_format(), access_log(&config)])).unwrap();
        for key in text.split("wasm.").skip(1) {
            let name: String = key.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            assert!(attr::ALL.contains(&name.as_str()), "{name} is not an attribute the filter sets");
        }
    }
}
