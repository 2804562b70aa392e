//! Parsing a config and every rule checked before it is used: each error
//! names the key and the fix.

use super::{
    describe_yaml_error, is_valid_name, split_host_port, ArgRule, AuthConfig, AuthType, BackendUrl, Config,
    ConfigError, IntegrityMode, LimitsConfig, Mode, PolicyConfig, RateLimitBackend, RateLimitConfig, ServerConfig,
    Transport, DENIAL_STATUS_DEFAULT, DENIAL_STATUS_FORBIDDEN, MAX_ENDPOINTS, MAX_MAX_IN_FLIGHT, UNEXPANDED_SECRET,
};
use std::collections::BTreeSet;

impl Config {
    /// Parses and validates a config file's text (YAML; JSON is YAML too).
    pub fn from_yaml(text: &str, mode: Mode) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                "",
                "the config is empty; at least `servers:` is needed (see examples/demo.yaml)",
            ));
        }
        let config: Config = serde_yaml::from_str(text).map_err(|e| ConfigError::new("", describe_yaml_error(&e)))?;
        config.validate(mode)?;
        Ok(config)
    }

    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The listen address as (host, port); `:8080` means all interfaces.
    pub fn listen_addr(&self) -> Result<(String, u16), ConfigError> {
        let (host, port) = split_host_port(&self.listen).map_err(|m| ConfigError::new("listen", m))?;
        let port =
            port.ok_or_else(|| ConfigError::new("listen", "needs a port, e.g. \":8080\" or \"127.0.0.1:8080\""))?;
        let host = if host.is_empty() { "0.0.0.0".to_string() } else { host };
        Ok((host, port))
    }

    /// Every rule that can be checked without touching the network.
    pub fn validate(&self, mode: Mode) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.servers.is_empty() {
            return Err(ConfigError::new("servers", "no servers are configured; add at least one `- name: …` entry"));
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let key = format!("servers[{i}]");
            validate_server(s, &key, mode)?;
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("server name {:?} is used twice; every server needs its own name", s.name),
                ));
            }
        }
        validate_auth(&self.auth, &names)?;
        if mode == Mode::Plugin {
            // The filter cannot read the environment: `mcpx run/render` expand
            // these; a plugin configuration written by hand must not hold them.
            let tokens = self.auth.token.iter().map(|t| ("auth.token".to_string(), t)).chain(
                self.auth.clients.iter().enumerate().map(|(i, c)| (format!("auth.clients[{i}].token"), &c.token)),
            );
            for (key, value) in tokens {
                if value.contains("${") {
                    return Err(ConfigError::new(key, UNEXPANDED_SECRET));
                }
            }
        }
        for (client, c) in &self.clients {
            for (server, policy) in &c.servers {
                let key = format!("clients.{client}.servers.{server}");
                if !names.contains(server.as_str()) {
                    return Err(ConfigError::new(
                        key,
                        format!("names a server that is not in `servers:`; known servers: {}", join(&names)),
                    ));
                }
                validate_policy(policy, &key)?;
            }
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_body_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::new("limits.max_body_bytes", "must be between 1 and 67108864 (64 MiB)"));
        }
        validate_limits(&self.limits)?;
        if ![DENIAL_STATUS_DEFAULT, DENIAL_STATUS_FORBIDDEN].contains(&self.denial_http_status) {
            return Err(ConfigError::new(
                "denial_http_status",
                format!(
                    "is {} but must be 200 (the default: every official MCP client reads the JSON-RPC -32003 error and \
                     keeps its session) or 403 (the status policy denials had before; the TypeScript SDK and the \
                     Inspector then see an HTTP error, not the JSON-RPC one); remove the key or set one of them",
                    self.denial_http_status
                ),
            ));
        }
        let rl = &self.rate_limit;
        if rl.enabled && (rl.rps == 0 || rl.burst == 0 || (rl.per_tool && (rl.tool_rps == 0 || rl.tool_burst == 0))) {
            return Err(ConfigError::new(
                "rate_limit",
                "rps, burst, tool_rps and tool_burst must be at least 1 when enabled",
            ));
        }
        validate_rate_limit_backend(rl)?;
        let cb = &self.circuit_breaker;
        if cb.enabled && (cb.failure_threshold == 0 || cb.half_open_max == 0 || cb.cooldown.as_millis() == 0) {
            return Err(ConfigError::new(
                "circuit_breaker",
                "failure_threshold, half_open_max and cooldown must be above zero when enabled",
            ));
        }
        if let Some(cors) = &self.cors {
            for (i, o) in cors.allowed_origins.iter().enumerate() {
                if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                    return Err(ConfigError::new(
                        format!("cors.allowed_origins[{i}]"),
                        format!(
                            "{o:?} is not an origin; write it as scheme://host[:port], e.g. https://app.example.com"
                        ),
                    ));
                }
            }
        }
        let t = &self.tracing;
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(ConfigError::new("tracing.sample_ratio", "must be between 0.0 and 1.0"));
        }
        if t.enabled {
            match &t.endpoint {
                Some(e) => {
                    BackendUrl::parse(e).map_err(|m| ConfigError::new("tracing.endpoint", format!("{e:?} {m}")))?;
                }
                None => {
                    return Err(ConfigError::new(
                        "tracing.endpoint",
                        "is required when tracing is enabled, e.g. http://otel-collector:4318",
                    ))
                }
            }
        }
        if self.audit.output.trim().is_empty() {
            return Err(ConfigError::new("audit.output", "must be stdout, stderr or a file path"));
        }
        self.validate_lock(mode)
    }

    /// `inspection.lock` / `inspection.pins`: who reads the file, that the
    /// pins are hashes, and that every locked server is configured (a lock
    /// for a misspelt or removed server would silently leave the real one
    /// on trust-on-first-use, so that is an error, not a warning).
    pub fn validate_lock(&self, mode: Mode) -> Result<(), ConfigError> {
        let i = &self.inspection;
        if i.lock.is_some() && mode == Mode::Plugin {
            return Err(ConfigError::new(
                "inspection.lock",
                "the filter cannot read files; `mcpx run` and `mcpx render` embed the lock as inspection.pins \
                 (write that, or render the plugin configuration with mcpx)",
            ));
        }
        if i.lock.is_some() && i.pins.is_some() {
            return Err(ConfigError::new("inspection", "set either lock (a file) or pins (embedded), not both"));
        }
        if (i.lock.is_some() || i.pins.is_some()) && i.tool_integrity == IntegrityMode::Off {
            return Err(ConfigError::new(
                "inspection.tool_integrity",
                "is off, so the lock would not be enforced; set it to warn or enforce, or remove the lock",
            ));
        }
        let Some(pins) = &i.pins else { return Ok(()) };
        for (server, tools) in pins {
            if self.server(server).is_none() {
                return Err(ConfigError::new(
                    format!("inspection.pins.{server}"),
                    "the lock pins a server that is not in `servers:`; re-run `mcpx pin` or remove its entries",
                ));
            }
            for (tool, hash) in tools {
                if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(ConfigError::new(
                        format!("inspection.pins.{server}.{tool}"),
                        "is not a SHA-256 in lowercase hex (64 characters); re-run `mcpx pin`",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The request timeouts and the connection cap are always on: zero would
/// let a client hold a connection (and a slot) for as long as it likes.
fn validate_limits(l: &LimitsConfig) -> Result<(), ConfigError> {
    if l.request_headers_timeout.as_millis() == 0 {
        return Err(ConfigError::new(
            "limits.request_headers_timeout",
            "must be above zero (e.g. 10s): it bounds how long a client may take to send its headers",
        ));
    }
    if l.request_timeout.as_millis() == 0 {
        return Err(ConfigError::new(
            "limits.request_timeout",
            "must be above zero (e.g. 30s): it bounds how long a client may take to send its whole request",
        ));
    }
    if l.request_headers_timeout > l.request_timeout {
        return Err(ConfigError::new(
            "limits.request_headers_timeout",
            format!(
                "is {} but limits.request_timeout is {}; the headers are part of the request, so lower it or raise request_timeout",
                l.request_headers_timeout, l.request_timeout
            ),
        ));
    }
    if l.max_connections == 0 {
        return Err(ConfigError::new(
            "limits.max_connections",
            "must be at least 1 (e.g. 10000); keep it below the open-files limit (ulimit -n)",
        ));
    }
    Ok(())
}

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(", ")
}

/// `endpoints`: each a backend URL, all with the first one's scheme and
/// path (they are replicas of one server), none twice.
fn validate_endpoints(endpoints: &[String], key: &str) -> Result<(), ConfigError> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(ConfigError::new(
            format!("{key}.endpoints"),
            format!(
                "lists {} URLs; at most {MAX_ENDPOINTS} are allowed (use a DNS name in `url` for more)",
                endpoints.len()
            ),
        ));
    }
    let mut first: Option<BackendUrl> = None;
    for (i, url) in endpoints.iter().enumerate() {
        let k = format!("{key}.endpoints[{i}]");
        let u = BackendUrl::parse(url).map_err(|m| ConfigError::new(&k, format!("{url:?} {m}")))?;
        if endpoints.iter().take(i).any(|e| e == url) {
            return Err(ConfigError::new(&k, format!("{url:?} is listed twice; list each replica once")));
        }
        match &first {
            None => first = Some(u),
            Some(f) if f.tls != u.tls || f.path != u.path => {
                return Err(ConfigError::new(
                    &k,
                    format!(
                        "{url:?} must have the same scheme and path as endpoints[0] ({}://…{}): endpoints are replicas of one server",
                        if f.tls { "https" } else { "http" },
                        f.path
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn validate_server(s: &ServerConfig, key: &str, mode: Mode) -> Result<(), ConfigError> {
    if !is_valid_name(&s.name) {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!("{:?} is not a valid server name; use 1-64 lowercase letters, digits, '-' or '_' (it becomes the path /mcp/NAME)", s.name),
        ));
    }
    let key = format!("servers.{}", s.name);
    match s.transport {
        Transport::Http => {
            if s.command.is_some() || !s.args.is_empty() || !s.env.is_empty() || s.workdir.is_some() || s.user.is_some()
            {
                return Err(ConfigError::new(
                    &key,
                    "command/args/env/workdir/user are for `transport: stdio`; add `transport: stdio` or remove them",
                ));
            }
            if s.url.is_some() && !s.endpoints.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.endpoints"),
                    "cannot be combined with url; list every replica under endpoints and remove url",
                ));
            }
            validate_endpoints(&s.endpoints, &key)?;
            match &s.url {
                Some(url) => {
                    BackendUrl::parse(url)
                        .map_err(|m| ConfigError::new(format!("{key}.url"), format!("{url:?} {m}")))?;
                }
                None if !s.endpoints.is_empty() => {}
                None if mode == Mode::Gateway => {
                    return Err(ConfigError::new(format!("{key}.url"), "is required for an HTTP server, e.g. url: http://localhost:3001/mcp (or set `transport: stdio` and `command:`)"));
                }
                None => {}
            }
        }
        Transport::Stdio => {
            if !s.endpoints.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.endpoints"),
                    "is for HTTP servers; a stdio server is started from `command:` instead",
                ));
            }
            if s.url.is_some() {
                return Err(ConfigError::new(
                    format!("{key}.url"),
                    "is for HTTP servers; a stdio server is started from `command:` instead",
                ));
            }
            match &s.command {
                Some(c) if !c.trim().is_empty() => {}
                _ if mode == Mode::Gateway => {
                    return Err(ConfigError::new(
                        format!("{key}.command"),
                        "is required for `transport: stdio`, e.g. command: npx",
                    ));
                }
                _ => {}
            }
            for k in s.env.keys() {
                if k.is_empty() || k.contains('=') {
                    return Err(ConfigError::new(
                        format!("{key}.env"),
                        format!("{k:?} is not a valid environment variable name"),
                    ));
                }
            }
        }
    }
    if let Some(t) = s.request_timeout {
        if t.as_millis() == 0 {
            return Err(ConfigError::new(format!("{key}.request_timeout"), "must be above zero, e.g. 30s"));
        }
    }
    if let Some(n) = s.max_in_flight {
        if n == 0 || n > MAX_MAX_IN_FLIGHT {
            return Err(ConfigError::new(
                format!("{key}.max_in_flight"),
                format!("must be between 1 and {MAX_MAX_IN_FLIGHT} (requests in flight at once), e.g. 64"),
            ));
        }
    }
    validate_policy(&s.policy, &format!("{key}.policy"))
}

fn validate_policy(p: &PolicyConfig, key: &str) -> Result<(), ConfigError> {
    for (list, name) in [(&p.allow_resources, "allow_resources"), (&p.deny_resources, "deny_resources")] {
        for (i, prefix) in list.iter().enumerate() {
            crate::request::resource_uri::normalise(prefix).map_err(|why| {
                ConfigError::new(
                    format!("{key}.{name}[{i}]"),
                    format!("{prefix:?} cannot be a resource prefix because {why}; write it without dot segments or encoded separators"),
                )
            })?;
        }
    }
    for (tool, rule) in &p.tool_rules {
        for (arg, r) in &rule.args {
            let k = format!("{key}.tool_rules.{tool}.args.{arg}");
            if r == &ArgRule::default() {
                return Err(ConfigError::new(
                    k,
                    "has no condition; use equals, one_of, prefix, suffix, regex or required",
                ));
            }
            if let Some(re) = &r.regex {
                regex_lite::Regex::new(re).map_err(|e| {
                    ConfigError::new(format!("{k}.regex"), format!("invalid regular expression {re:?}: {e}"))
                })?;
            }
            if matches!(&r.one_of, Some(v) if v.is_empty()) {
                return Err(ConfigError::new(
                    format!("{k}.one_of"),
                    "is empty, so nothing could match; list the allowed values",
                ));
            }
        }
    }
    Ok(())
}

fn validate_auth(a: &AuthConfig, servers: &BTreeSet<&str>) -> Result<(), ConfigError> {
    if !a.enabled {
        return Ok(());
    }
    let mut seen = BTreeSet::new();
    for (i, c) in a.clients.iter().enumerate() {
        if c.name.trim().is_empty() {
            return Err(ConfigError::new(
                format!("auth.clients[{i}].name"),
                "must not be empty; it is the client's identity",
            ));
        }
        if c.token.is_empty() {
            return Err(ConfigError::new(format!("auth.clients[{i}].token"), "must not be empty"));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(ConfigError::new(format!("auth.clients[{i}].name"), format!("{:?} is listed twice", c.name)));
        }
    }
    match a.kind {
        AuthType::Bearer | AuthType::ApiKey => {
            if a.token.as_deref().is_none_or(str::is_empty) && a.clients.is_empty() {
                return Err(ConfigError::new("auth", "needs `token:` or `clients:` when enabled with type bearer/api_key (tip: token: \"${MCPX_TOKEN}\")"));
            }
            if let Some(h) = &a.header {
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return Err(ConfigError::new("auth.header", format!("{h:?} is not a valid HTTP header name")));
                }
            }
        }
        AuthType::Oauth if a.oauth.is_none() => {
            return Err(ConfigError::new("auth.oauth", "is required with `type: oauth` (resource, jwks_uri, ...)"));
        }
        AuthType::Oauth => {}
    }
    // An `oauth:` block is checked whenever present, so a later switch to
    // `type: oauth` cannot surface old mistakes.
    if let Some(o) = &a.oauth {
        for (k, v) in [("resource", &o.resource), ("jwks_uri", &o.jwks_uri)] {
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(ConfigError::new(format!("auth.oauth.{k}"), format!("{v:?} must be an http(s) URL")));
            }
        }
        BackendUrl::parse(&o.jwks_uri).map_err(|m| ConfigError::new("auth.oauth.jwks_uri", m))?;
        if o.authorization_servers.is_empty() && o.issuer.is_none() {
            return Err(ConfigError::new(
                "auth.oauth.authorization_servers",
                "list at least one authorization server (or set `issuer:`): clients discover it from the RFC 9728 metadata",
            ));
        }
        if o.identity_claim.is_empty() {
            return Err(ConfigError::new("auth.oauth.identity_claim", "must name a claim, e.g. sub"));
        }
        for scope_key in o.scopes.keys() {
            let server = scope_key.split('/').next().unwrap_or_default();
            if !servers.contains(server) {
                return Err(ConfigError::new(
                    format!("auth.oauth.scopes.{scope_key}"),
                    format!(
                        "names a server that is not in `servers:`; write SERVER or SERVER/TOOL (known: {})",
                        join(servers)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `backend: global` needs a service to ask; the global-only keys make no
/// sense with `local` (a typo there would silently keep limits per gateway).
fn validate_rate_limit_backend(rl: &RateLimitConfig) -> Result<(), ConfigError> {
    if rl.enabled && rl.per_client && (rl.client_rps == 0 || rl.client_burst == 0) {
        return Err(ConfigError::new("rate_limit", "client_rps and client_burst must be at least 1 when per_client"));
    }
    match rl.backend {
        RateLimitBackend::Local => {
            if rl.service.is_some() {
                return Err(ConfigError::new(
                    "rate_limit.service",
                    "is only used with backend: global; add `backend: global` or remove it",
                ));
            }
            if rl.failure_mode.is_some() {
                return Err(ConfigError::new(
                    "rate_limit.failure_mode",
                    "is only used with backend: global; add `backend: global` or remove it",
                ));
            }
        }
        RateLimitBackend::Global => {
            let Some(service) = rl.service.as_deref() else {
                return Err(ConfigError::new(
                    "rate_limit.service",
                    "is required with backend: global; name the rate-limit service as HOST:PORT, e.g. 127.0.0.1:8081",
                ));
            };
            match split_host_port(service) {
                Ok((host, Some(_))) if !host.is_empty() => {}
                Ok(_) => {
                    return Err(ConfigError::new(
                        "rate_limit.service",
                        format!("{service:?} needs a host and a port, e.g. ratelimit:8081"),
                    ))
                }
                Err(m) => return Err(ConfigError::new("rate_limit.service", format!("{service:?} {m}"))),
            }
        }
    }
    Ok(())
}
