use super::*;

fn parse(y: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(y, Mode::Gateway)
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n").unwrap();
    assert_eq!(c.listen_addr().unwrap(), ("0.0.0.0".to_string(), 8080));
    assert_eq!(c.limits, LimitsConfig::default());
    assert_eq!(c.limits.request_timeout, Duration::from_millis(30_000));
    assert!(c.inspection.filter_tools_list);
    assert_eq!(BackendUrl::parse(c.servers[0].url.as_deref().unwrap()).unwrap().path, "/mcp");
}

#[test]
fn spec_example_is_accepted() {
    let text = include_str!("../../tests/data/spec-example.yaml");
    let c = Config::from_yaml(text, Mode::Gateway).unwrap();
    assert_eq!(c.servers.len(), 2);
    assert_eq!(c.servers[1].request_timeout, Some(Duration::from_millis(30_000)));
    assert_eq!(c.circuit_breaker.cooldown.as_millis(), 30_000);
}

#[test]
fn global_rate_limit_keys_are_checked() {
    let base = "servers: [{ name: demo, url: 'http://h:1' }]\nrate_limit: ";
    let ok = parse(&format!("{base}{{ enabled: true, backend: global, service: 'rl:8081' }}")).unwrap();
    assert_eq!(ok.rate_limit.backend, RateLimitBackend::Global);
    assert_eq!(ok.rate_limit.failure_mode.unwrap_or_default(), FailureMode::Deny);
    let allow = parse(&format!("{base}{{ enabled: true, backend: global, service: 'rl:8081', failure_mode: allow }}"));
    assert_eq!(allow.unwrap().rate_limit.failure_mode, Some(FailureMode::Allow));
    let cases = [
        ("{ enabled: true, backend: global }", "rate_limit.service", "is required"),
        ("{ enabled: true, backend: global, service: 'rl' }", "rate_limit.service", "needs a host and a port"),
        ("{ enabled: true, backend: global, service: 'rl:0' }", "rate_limit.service", "invalid port"),
        ("{ enabled: true, service: 'rl:8081' }", "rate_limit.service", "backend: global"),
        ("{ enabled: true, failure_mode: allow }", "rate_limit.failure_mode", "backend: global"),
        ("{ enabled: true, per_client: true, client_rps: 0 }", "rate_limit", "client_rps"),
    ];
    for (rl, key, text) in cases {
        let e = parse(&format!("{base}{rl}")).unwrap_err();
        assert_eq!(e.key, key, "{rl}: {e}");
        assert!(e.message.contains(text), "{rl}: {e}");
    }
    let e =
        parse(&format!("{base}{{ enabled: true, backend: global, service: 'rl:1', failure_mode: open }}")).unwrap_err();
    assert!(e.message.contains("unknown variant `open`"), "{e}");
}

#[test]
fn unknown_key_names_key_and_line() {
    let e = parse("servers:\n  - name: demo\n    url: http://h:1\n    polcy: {}\n").unwrap_err();
    assert!(e.message.contains("unknown field `polcy`"), "{e}");
    assert!(e.message.contains("line 4"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        ("servers:\n  - name: Demo\n    url: http://h:1\n", "servers[0].name"),
        ("servers:\n  - name: a\n    url: http://h:1\n  - name: a\n    url: http://h:2\n", "servers[1].name"),
        ("servers:\n  - name: a\n", "servers.a.url"),
        ("servers:\n  - name: a\n    url: ftp://h\n", "servers.a.url"),
        ("servers:\n  - name: a\n    transport: stdio\n", "servers.a.command"),
        ("servers:\n  - name: a\n    url: http://h:1\n    policy:\n      tool_rules:\n        t:\n          args:\n            p: { regex: \"(\" }\n", "servers.a.policy.tool_rules.t.args.p.regex"),
        ("servers:\n  - name: a\n    url: http://h:1\nclients:\n  bot:\n    servers:\n      b: {}\n", "clients.bot.servers.b"),
        ("servers:\n  - name: a\n    url: http://h:1\nauth:\n  enabled: true\n", "auth"),
        ("servers:\n  - name: a\n    url: http://h:1\nauth:\n  enabled: true\n  type: oauth\n", "auth.oauth"),
        ("servers:\n  - name: a\n    url: http://h:1\nauth:\n  enabled: true\n  type: oauth\n  oauth: { resource: \"https://g/mcp\", jwks_uri: \"https://a/jwks\" }\n", "auth.oauth.authorization_servers"),
        ("listen: \"8080\"\nservers:\n  - name: a\n    url: http://h:1\n", "listen"),
        ("servers:\n  - name: a\n    url: http://h:1\n    policy: {deny_resources: [\"file:///x/../y\"]}\n", "servers.a.policy.deny_resources[0]"),
        ("servers:\n  - name: a\n    url: http://h:1\nlimits: { request_timeout: 0s }\n", "limits.request_timeout"),
        ("servers:\n  - name: a\n    url: http://h:1\nlimits: { request_headers_timeout: 0s }\n", "limits.request_headers_timeout"),
        ("servers:\n  - name: a\n    url: http://h:1\nlimits: { request_headers_timeout: 1m, request_timeout: 30s }\n", "limits.request_headers_timeout"),
        ("servers:\n  - name: a\n    url: http://h:1\nlimits: { max_connections: 0 }\n", "limits.max_connections"),
        ("servers:\n  - name: a\n    url: http://h:1\n    max_in_flight: 0\n", "servers.a.max_in_flight"),
        ("servers:\n  - name: a\n    url: http://h:1\n    max_in_flight: 1000001\n", "servers.a.max_in_flight"),
        ("servers:\n  - name: a\n    url: http://h:1\ndenial_http_status: 400\n", "denial_http_status"),
        ("servers:\n  - name: a\n    url: http://h:1\n    endpoints: [\"http://h:2\"]\n", "servers.a.endpoints"),
        ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"ftp://h:2\"]\n", "servers.a.endpoints[1]"),
        ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"https://h:2/mcp\"]\n", "servers.a.endpoints[1]"),
        ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"http://h:2/other\"]\n", "servers.a.endpoints[1]"),
        ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"http://h:1/mcp\"]\n", "servers.a.endpoints[1]"),
        ("servers:\n  - name: a\n    transport: stdio\n    command: x\n    endpoints: [\"http://h:1\"]\n", "servers.a.endpoints"),
    ];
    for (text, key) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.key, key, "for {text:?}: {e}");
    }
}

#[test]
fn denial_status_defaults_to_200_and_keeps_403_as_a_choice() {
    let base = "servers:\n  - name: a\n    url: http://h:1\n";
    assert_eq!(parse(base).unwrap().denial_http_status, 200);
    assert_eq!(parse(&format!("{base}denial_http_status: 403\n")).unwrap().denial_http_status, 403);
    let e = parse(&format!("{base}denial_http_status: 418\n")).unwrap_err();
    assert!(e.message.contains("must be 200") && e.message.contains("or 403"), "{e}");
}

#[test]
fn durations() {
    assert_eq!(Duration::parse("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(Duration::parse("2m"), Some(Duration::from_millis(120_000)));
    assert_eq!(Duration::parse("30"), None);
    assert_eq!(Duration::parse("1.5s"), None);
    assert_eq!(Duration::from_millis(30_000).to_string(), "30s");
    let e =
        parse("servers:\n  - name: a\n    transport: stdio\n    command: x\n    request_timeout: 30sec\n").unwrap_err();
    assert!(e.message.contains("invalid duration"), "{e}");
}

#[test]
fn plugin_mode_needs_no_url() {
    assert!(Config::from_yaml("servers:\n  - name: a\n", Mode::Plugin).is_ok());
    assert!(Config::from_yaml("{\"servers\":[{\"name\":\"a\"}]}", Mode::Plugin).is_ok());
}

#[test]
fn round_trips_through_json() {
    let text = include_str!("../../tests/data/spec-example.yaml");
    let c = Config::from_yaml(text, Mode::Gateway).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    let back = Config::from_yaml(&json, Mode::Gateway).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

#[test]
fn env_expansion() {
    let look = |k: &str| (k == "T").then(|| "s3cret".to_string());
    assert_eq!(expand_env("Bearer ${T}!", look).unwrap(), "Bearer s3cret!");
    assert_eq!(expand_env("plain", look).unwrap(), "plain");
    assert!(expand_env("${NOPE}", look).unwrap_err().contains("NOPE"));
    assert!(expand_env("${T", look).is_err());
}

#[test]
fn url_parsing() {
    let u = BackendUrl::parse("https://[::1]:9443/api/mcp").unwrap();
    assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "::1", 9443, "/api/mcp"));
    assert!(BackendUrl::parse("http://u:p@h/").is_err());
    assert!(BackendUrl::parse("http://h:0").is_err());
    assert!(BackendUrl::parse("http://h/x?y").is_err());
}
