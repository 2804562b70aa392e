//! Operator endpoints for the integrity baseline: `GET /baseline` shows every
//! pin and recorded violation; `DELETE /baseline[/{server}[/{tool}]]` forgets
//! them so the next `tools/list` pins afresh.
//!
//! They are served only by the plugin instance whose root id is
//! [`CONTROL_ROOT_ID`], which `mcpx run` renders on a separate listener: a
//! Unix socket with mode 0600 in a directory only the operator's account can
//! enter, so no other account can connect (a loopback TCP port would be open
//! to every local process). The main listener never serves them. As a second
//! line of defence (for an Envoy of your own that puts this root id on a TCP
//! listener), requests carrying an `Origin` header or a non-loopback `Host`
//! are refused, so a browser on the machine cannot use them (DNS rebinding,
//! CSRF).

use crate::envelope::{code, Reply, ReplyTo};
use crate::integrity::{self, BaselineStore};
use crate::request::RequestHead;
use serde_json::json;

/// The plugin root id that turns the control endpoints on.
pub const CONTROL_ROOT_ID: &str = "mcpx_control";

/// The control endpoints' path prefix.
pub const BASELINE_PATH: &str = "/baseline";

/// Answers one control request.
pub fn handle(head: &RequestHead<'_>, store: &mut dyn BaselineStore) -> Reply {
    if head.get("origin").is_some() {
        return Reply::error(
            403,
            code::FORBIDDEN,
            "control endpoints refuse browser (Origin) requests",
            &ReplyTo::Http,
        );
    }
    if !head.get(":authority").or_else(|| head.get("host")).is_some_and(is_loopback_host) {
        return Reply::error(
            403,
            code::FORBIDDEN,
            "control endpoints answer only requests addressed to a loopback host (127.0.0.1, [::1], localhost)",
            &ReplyTo::Http,
        );
    }
    let path = head.path();
    let Some(rest) = path.strip_prefix(BASELINE_PATH).filter(|r| r.is_empty() || r.starts_with('/')) else {
        return Reply::error(404, code::NOT_FOUND, "not found: the control endpoint is /baseline", &ReplyTo::Http);
    };
    let parts: Vec<String> = rest.split('/').filter(|p| !p.is_empty()).map(percent_decode).collect();
    let unavailable = |e: integrity::StoreError| Reply::error(503, code::UNAVAILABLE, &e.to_string(), &ReplyTo::Http);
    match (head.method(), parts.as_slice()) {
        ("GET", []) => match integrity::snapshot(store) {
            Ok(v) => Reply::json(200, &v),
            Err(e) => unavailable(e),
        },
        ("DELETE", [..]) if parts.len() <= 2 => {
            let (server, tool) = (parts.first().map(String::as_str), parts.get(1).map(String::as_str));
            match integrity::reset(store, server, tool) {
                Ok(summary) => Reply::json(
                    200,
                    &json!({ "reset": { "server": server, "tool": tool }, "pins_removed": summary.pins_removed,
                             "violations_removed": summary.violations_removed }),
                ),
                Err(e) => unavailable(e),
            }
        }
        ("GET" | "DELETE", _) => Reply::error(
            404,
            code::NOT_FOUND,
            "not found: use GET /baseline or DELETE /baseline[/{server}[/{tool}]]",
            &ReplyTo::Http,
        ),
        (m, _) => Reply::error(
            405,
            code::METHOD_NOT_ALLOWED,
            &format!("{m} is not supported here; use GET or DELETE"),
            &ReplyTo::Http,
        )
        .with_header("allow", "GET, DELETE"),
    }
}

fn is_loopback_host(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(h, _)| h),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `%XX` decoding for a path segment (tool names may hold any character);
/// invalid escapes are kept literally.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |j: usize| b.get(j).and_then(|&c| (c as char).to_digit(16));
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::MemoryStore;
    use serde_json::{json, Value};

    fn call(store: &mut MemoryStore, method: &str, path: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut h = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "127.0.0.1:9902".to_string()),
        ];
        for (k, v) in extra {
            h.retain(|(name, _)| name != k);
            h.push((k.to_string(), v.to_string()));
        }
        let r = handle(&RequestHead { headers: &h }, store);
        (r.status, serde_json::from_str(&r.body).unwrap())
    }

    fn seeded() -> MemoryStore {
        let mut store = MemoryStore::default();
        let t = |n: &str, d: &str| json!({"name": n, "description": d});
        integrity::check_tools(&mut store, "a", &[t("x y", "1"), t("z", "1")]).unwrap();
        integrity::check_tools(&mut store, "a", &[t("x y", "2")]).unwrap();
        store
    }

    #[test]
    fn show_and_reset() {
        let mut store = seeded();
        let (status, v) = call(&mut store, "GET", "/baseline", &[]);
        assert_eq!(status, 200);
        assert_eq!(v["servers"]["a"]["z"]["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(v["violations"]["a"]["x y"]["kind"], "rug_pull");
        let (status, v) = call(&mut store, "DELETE", "/baseline/a/x%20y", &[]);
        assert_eq!((status, v["pins_removed"].as_u64(), v["violations_removed"].as_u64()), (200, Some(1), Some(1)));
        let (_, v) = call(&mut store, "DELETE", "/baseline", &[]);
        assert_eq!(v["pins_removed"], 1);
        assert_eq!(call(&mut store, "GET", "/baseline", &[]).1, json!({"servers": {}, "violations": {}}));
    }

    #[test]
    fn refuses_browsers_foreign_hosts_and_other_paths() {
        let mut store = seeded();
        assert_eq!(call(&mut store, "DELETE", "/baseline", &[("origin", "http://evil.example")]).0, 403);
        assert_eq!(call(&mut store, "GET", "/baseline", &[(":authority", "evil.example:9902")]).0, 403);
        assert_eq!(call(&mut store, "GET", "/baseline", &[(":authority", "127.0.0.1.evil.example")]).0, 403);
        assert_eq!(call(&mut store, "GET", "/baseline", &[(":authority", "[::1]:9902")]).0, 200);
        assert_eq!(call(&mut store, "GET", "/baseline", &[(":authority", "localhost")]).0, 200);
        assert_eq!(call(&mut store, "GET", "/baselines", &[]).0, 404);
        assert_eq!(call(&mut store, "GET", "/baseline/a", &[]).0, 404);
        assert_eq!(call(&mut store, "DELETE", "/baseline/a/b/c", &[]).0, 404);
        assert_eq!(call(&mut store, "POST", "/baseline", &[]).0, 405);
        // Nothing was reset by the refused requests.
        assert_eq!(call(&mut store, "GET", "/baseline", &[]).1["violations"]["a"]["x y"]["kind"], "rug_pull");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
