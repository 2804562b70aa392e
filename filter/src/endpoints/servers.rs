//! `GET /servers` (docs/reload-and-health.md): the servers, their transport and a policy
//! summary. Built field by field from an allow-list, never by serialising the
//! config, so secrets (tokens, `env` values, `args` that may carry keys) can
//! never leak through a field added later.

use crate::config::{Config, PolicyConfig, Transport};
use serde_json::{json, Map, Value};

pub fn summary(config: &Config) -> Value {
    let servers: Vec<Value> = config
        .servers
        .iter()
        .map(|s| {
            let mut v = Map::new();
            v.insert("name".into(), json!(s.name));
            v.insert("path".into(), json!(format!("/mcp/{}", s.name)));
            let transport = match s.transport {
                Transport::Http => "http",
                Transport::Stdio => "stdio",
            };
            v.insert("transport".into(), json!(transport));
            v.insert("policy".into(), policy(&s.policy));
            match s.transport {
                // URLs cannot hold credentials or a query (config validation).
                Transport::Http if !s.endpoints.is_empty() => v.insert("endpoints".into(), json!(s.endpoints)),
                Transport::Http => v.insert("url".into(), json!(s.url)),
                // Only the program: arguments and env values may hold secrets.
                Transport::Stdio => v.insert("command".into(), json!(s.command)),
            };
            let overrides: Vec<&str> = config
                .clients
                .iter()
                .filter(|(_, c)| c.servers.contains_key(&s.name))
                .map(|(name, _)| name.as_str())
                .collect();
            if !overrides.is_empty() {
                v.insert("client_overrides".into(), json!(overrides));
            }
            Value::Object(v)
        })
        .collect();
    json!({ "servers": servers })
}

fn policy(p: &PolicyConfig) -> Value {
    let mut v = Map::new();
    v.insert("read_only".into(), json!(p.read_only));
    let lists = [
        ("allow_tools", &p.allow_tools),
        ("deny_tools", &p.deny_tools),
        ("allow_resources", &p.allow_resources),
        ("deny_resources", &p.deny_resources),
        ("allow_prompts", &p.allow_prompts),
        ("deny_prompts", &p.deny_prompts),
    ];
    for (key, list) in lists {
        if !list.is_empty() {
            v.insert(key.into(), json!(list));
        }
    }
    if !p.tool_rules.is_empty() {
        // Which tools have argument rules; the rules themselves stay private.
        v.insert("tool_rules".into(), json!(p.tool_rules.keys().collect::<Vec<_>>()));
    }
    Value::Object(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    #[test]
    fn lists_servers_without_secrets() {
        let c = Config::from_yaml(
            r#"
servers:
  - name: fs
    url: http://127.0.0.1:3001/mcp
    policy:
      deny_tools: [delete]
      tool_rules: { read_file: { args: { path: { prefix: "/secret-prefix/" } } } }
  - name: gh
    transport: stdio
    command: npx
    args: ["--token", "ARG-SECRET"]
    env: { GITHUB_TOKEN: "ENV-SECRET" }
auth:
  enabled: true
  token: "TOKEN-SECRET"
  clients: [{ name: bot, token: "CLIENT-SECRET" }]
clients:
  bot: { servers: { fs: { allow_tools: [read_file] } } }
"#,
            Mode::Gateway,
        )
        .unwrap();
        let v = summary(&c);
        let text = v.to_string();
        for secret in ["ARG-SECRET", "ENV-SECRET", "TOKEN-SECRET", "CLIENT-SECRET", "/secret-prefix/"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["servers"][0]["transport"], "http");
        assert_eq!(v["servers"][0]["policy"]["deny_tools"], json!(["delete"]));
        assert_eq!(v["servers"][0]["policy"]["tool_rules"], json!(["read_file"]));
        assert_eq!(v["servers"][0]["client_overrides"], json!(["bot"]));
        assert_eq!(v["servers"][1]["transport"], "stdio");
        assert_eq!(v["servers"][1]["command"], "npx");
    }

    #[test]
    fn replicas_are_listed_as_endpoints() {
        let c = Config::from_yaml(
            "servers:\n  - name: r\n    endpoints: [\"http://10.0.0.1:1/mcp\", \"http://10.0.0.2:1/mcp\"]\n",
            Mode::Gateway,
        )
        .unwrap();
        let v = summary(&c);
        assert_eq!(v["servers"][0]["endpoints"], json!(["http://10.0.0.1:1/mcp", "http://10.0.0.2:1/mcp"]));
        assert!(v["servers"][0].get("url").is_none());
    }
}
