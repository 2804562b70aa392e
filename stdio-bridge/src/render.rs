//! Renders the Envoy configuration for a validated `mcpx.yaml`.
//!
//! Built from typed `serde_json` values, never string templates, so every
//! value is escaped correctly and the output is always well-formed. Each
//! piece (listener, filters, routes, clusters) is its own function so the
//! pieces can also be printed alone for users with their own Envoy.

use crate::affinity;
use crate::ratelimit::buckets;
use crate::ratelimit::render as global_rl;
use mcpx_filter::auth::oauth::{JwksSource, DEFAULT_JWKS_CLUSTER};
use mcpx_filter::config::{AuthType, BackendUrl, Config, Mode, ServerConfig, Transport, DEFAULT_MAX_IN_FLIGHT};
use mcpx_filter::control::CONTROL_ROOT_ID;
use mcpx_filter::names::{self, attr, INTERNAL_HEADERS};
use mcpx_filter::ops;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Where things are on this machine: everything `mcpx.yaml` does not say.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The main listener (from `listen`, or `--listen`).
    pub listen: (String, u16),
    /// Envoy's admin interface; always loopback.
    pub admin: SocketAddr,
    /// The filter's `.wasm`.
    pub wasm_path: String,
    /// The stdio bridge, when the config has stdio servers.
    pub bridge: Option<SocketAddr>,
    /// The operator control listener (integrity baseline): a Unix socket path.
    pub control: Option<String>,
}

/// The Envoy cluster name of a server (the filter's `/health` probes use it too).
pub fn cluster_name(server: &str) -> String {
    names::cluster_name(server)
}

/// Per-connection buffer limit: the body limit plus headroom for large
/// `tools/list` responses the filter must buffer (Envoy buffers a paused body only up to this
/// limit, 1 MiB by default: a bigger request gets 413, a bigger paused response 500).
fn buffer_limit(config: &Config) -> u64 {
    (config.limits.max_body_bytes * 2).max(8 * 1024 * 1024)
}

/// The whole bootstrap `mcpx run` hands to Envoy.
pub fn bootstrap(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    check_header_names(config)?;
    Ok(json!({
        "node": { "id": "mcpx", "cluster": "mcpx" },
        "admin": {
            "address": socket_address(&opts.admin.ip().to_string(), opts.admin.port()),
            // Loopback only; readiness, reloads and /metrics must work while
            // clients hold every connection slot.
            "ignore_global_conn_limit": true,
        },
        "stats_config": stats_config(),
        "overload_manager": overload_manager(config),
        "static_resources": {
            "listeners": listeners(config, opts)?,
            "clusters": clusters(config, opts)?,
        },
    }))
}

pub fn socket_address(host: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": host, "port_value": port } })
}

fn listeners(config: &Config, opts: &RenderOptions) -> Result<Vec<Value>, String> {
    let mut all = vec![listener(config, opts)?];
    if let Some(path) = &opts.control {
        all.push(control_listener(&opts.wasm_path, path)?);
    }
    Ok(all)
}

/// The operator listener: the same filter in the same VM (`vm_id`), so it
/// sees the same shared-data baseline, but with the control root id, which
/// serves only `/baseline` (docs/integrity.md); the main listener never
/// serves these endpoints. It listens on a Unix socket with mode 0600, not on
/// a TCP port: a port on loopback is open to every local process, and these
/// endpoints can reset the integrity pins.
pub fn control_listener(wasm_path: &str, path: &str) -> Result<Value, String> {
    // The control root reads no policy: a fixed configuration keeps this
    // listener unchanged across reloads, so a policy change stays ECDS-only.
    let control_config =
        Config::from_yaml("servers: [{name: mcpx-control}]", Mode::Plugin).map_err(|e| e.to_string())?;
    if !path.starts_with('/') {
        return Err(format!("the control socket {path} is not an absolute path; pass --control /path/to/control.sock"));
    }
    Ok(json!({
        "name": "mcpx_control",
        // 0600: only the operator's account may connect.
        "address": { "pipe": { "path": path, "mode": 0o600 } },
        // The operator keeps access when clients hold every connection slot.
        "ignore_global_conn_limit": true,
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "mcpx_control",
                    "codec_type": "AUTO",
                    "route_config": {
                        "name": "mcpx_control",
                        "virtual_hosts": [{ "name": "mcpx_control", "domains": ["*"], "routes": [{
                            "match": { "prefix": "/" },
                            "direct_response": { "status": 404 },
                        }] }],
                    },
                    "http_filters": [
                        wasm_filter_for(&control_config, wasm_path, CONTROL_ROOT_ID)?,
                        { "name": "envoy.filters.http.router",
                          "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
                    ],
                },
            }],
        }],
    }))
}

pub fn listener(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    let (host, port) = &opts.listen;
    Ok(json!({
        "name": "mcpx",
        "address": socket_address(host, *port),
        // Envoy shares a port with any same-user socket that also set
        // SO_REUSEPORT (an Envoy left running, say), and clients would reach
        // either: a taken port must fail to bind instead.
        "enable_reuse_port": false,
        // With one shared socket the kernel no longer spreads connections
        // over the workers; Envoy's exact balancer does.
        "connection_balance_config": { "exact_balance": {} },
        "per_connection_buffer_limit_bytes": buffer_limit(config),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": http_connection_manager(config, opts)?,
            }],
        }],
    }))
}

fn http_connection_manager(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "mcpx",
        "codec_type": "AUTO",
        // Every response carries X-Request-ID: the caller's, else a new one.
        "generate_request_id": true,
        "preserve_external_request_id": true,
        "always_set_request_id_in_response": true,
        "route_config": route_config(config)?,
        "http_filters": http_filters(config, opts)?,
        "access_log": access_log(config),
    });
    if let Some(h) = hcm.as_object_mut() {
        h.extend(hostile_network_defaults(config));
    }
    if global_rl::is_global(config) {
        if let Some(m) = hcm["local_reply_config"]["mappers"].as_array_mut() {
            m.extend(global_rl::local_reply_mappers());
        }
    }
    let tracing = tracing(config);
    if !tracing.is_null() {
        hcm["tracing"] = tracing;
    }
    Ok(hcm)
}

/// HCM settings for a hostile network (docs/deployment.md#hostile-network-defaults):
/// how long a client may take to send a request, what happens to header
/// names with underscores, and the JSON envelope for the timeout reply.
///
/// `request_timeout` runs from the first byte of the request until its last
/// byte has passed the filters, so a client trickling its body is cut off;
/// it is disarmed once the request is complete, so a long SSE response is
/// never bounded by it. Streams are bounded only by idleness (the route's
/// `idle_timeout`).
///
/// Underscores: `x_mcpx_client` or `Mcp_Method` are different header names to
/// Envoy and the filter, but WSGI/CGI backends read them as `X-Mcpx-Client`
/// and `Mcp-Method`. They are dropped (not refused): then neither the filter
/// nor the backend sees them, so the backend executes exactly what the
/// filter decided on. Refusing would happen in Envoy's codec, before the
/// filter, as a bare 400 (HTTP/1) or a stream reset (HTTP/2) with no
/// envelope and no audit line, and would break clients whose proxies add
/// such headers.
pub fn hostile_network_defaults(config: &Config) -> serde_json::Map<String, Value> {
    let l = &config.limits;
    let mut m = serde_json::Map::new();
    m.insert("request_headers_timeout".into(), json!(proto_duration(l.request_headers_timeout.as_millis())));
    m.insert("request_timeout".into(), json!(proto_duration(l.request_timeout.as_millis())));
    m.insert(
        "common_http_protocol_options".into(),
        json!({
            "headers_with_underscores_action": "DROP_HEADER",
            // A connection with no request in flight (e.g. opened and left
            // silent) is closed after this; open streams are not idle.
            "idle_timeout": "300s",
        }),
    );
    // HTTP/2 (h2c): Envoy's default allows 2^31 streams on one connection,
    // which would sidestep the connection cap.
    m.insert("http2_protocol_options".into(), json!({ "max_concurrent_streams": 100 }));
    // Envoy's 408 is plain text; the filter has not decided anything yet, so
    // it cannot envelope it. The filter itself never answers 408.
    m.insert(
        "local_reply_config".into(),
        json!({ "mappers": [{
            "filter": { "status_code_filter": { "comparison": { "op": "EQ",
                "value": { "default_value": 408, "runtime_key": "mcpx.local_reply.408" } } } },
            "body_format_override": { "json_format": { "error": {
                "code": REQUEST_TIMEOUT_CODE,
                "message": "%LOCAL_REPLY_BODY%: the request did not arrive in time (limits.request_headers_timeout / limits.request_timeout)",
            } } },
        }] }),
    );
    m
}

/// The rendered listener drops header names with underscores, so a
/// credential header named that way would never arrive: every request would
/// be refused as unauthenticated. Say so at render (and `mcpx check`) time.
fn check_header_names(config: &Config) -> Result<(), String> {
    match &config.auth.header {
        Some(h) if config.auth.enabled && config.auth.kind == AuthType::ApiKey && h.contains('_') => Err(format!(
            "auth.header: {h:?} has an underscore; the gateway drops header names with underscores \
             (backends may read them as other headers), so clients could never send it: use {:?}",
            h.replace('_', "-")
        )),
        _ => Ok(()),
    }
}

/// JSON-RPC code of the 408 envelope (an invalid request: it never arrived whole).
pub const REQUEST_TIMEOUT_CODE: i64 = -32600;

/// The downstream connection cap for the whole Envoy process (the main
/// listener; admin and the control listener are exempt).
pub fn overload_manager(config: &Config) -> Value {
    json!({ "resource_monitors": [{
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
            "max_active_downstream_connections": config.limits.max_connections,
        },
    }] })
}

/// Order: CORS (answers allowed preflights) -> mcpx (auth, parse, policy,
/// Origin check, rate-limit key) -> local rate limit (reads the key) -> router.
pub fn http_filters(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    let mut filters = Vec::new();
    if config.cors.is_some() {
        filters.push(cors_filter());
    }
    filters.push(wasm_filter(config, &opts.wasm_path)?);
    // After the mcpx filter: it decides first, then Envoy picks the session's host.
    if affinity::needed(config) {
        filters.push(affinity::filter());
    }
    if global_rl::is_global(config) {
        filters.push(global_rl::filter(config));
    } else if config.rate_limit.enabled {
        filters.push(local_rate_limit_filter());
    }
    filters.push(json!({ "name": "envoy.filters.http.router",
          "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }));
    Ok(Value::Array(filters))
}

/// The plugin configuration: the config the filter reads, as JSON text.
/// Static credentials go in as `sha256:` digests (`${VAR}` expanded first),
/// so the rendered output never holds a secret (docs/auth.md).
pub fn plugin_configuration(config: &Config) -> Result<String, String> {
    let sealed = mcpx_filter::auth::seal_config(config, |k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    serde_json::to_string(&sealed).map_err(|e| format!("cannot serialise the filter configuration: {e}"))
}

pub fn wasm_filter(config: &Config, wasm_path: &str) -> Result<Value, String> {
    wasm_filter_for(config, wasm_path, "mcpx")
}

/// The filter with a given root id; everything in `vm_config` is the same
/// for every root id so they all share one VM and its shared data.
fn wasm_filter_for(config: &Config, wasm_path: &str, root_id: &str) -> Result<Value, String> {
    Ok(json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": root_id,
                "root_id": root_id,
                // Required to hold the headers while the body is read (Envoy 1.40: without it the
                // body callback never runs and the request hangs until `stream_idle_timeout`).
                "allow_on_headers_stop_iteration": true,
                // Never FAIL_OPEN: that would skip auth and policy.
                "failure_policy": "FAIL_RELOAD",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_configuration(config)?,
                },
                "vm_config": {
                    "vm_id": "mcpx",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path } },
                },
            },
        },
    }))
}

pub fn route_config(config: &Config) -> Result<Value, String> {
    let mut routes = vec![metrics_route(config)];
    for s in &config.servers {
        routes.push(server_route(config, &s.name)?);
    }
    // Anything else is not ours: a 404 in the same envelope the filter uses.
    routes.push(json!({
        "match": { "prefix": "/" },
        "direct_response": {
            "status": 404,
            "body": { "inline_string": r#"{"error":{"code":-32004,"message":"not found: MCP servers are at /mcp/{server}"}}"# },
        },
        "response_headers_to_add": [{ "header": { "key": "content-type", "value": "application/json" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }],
    }));
    let mut vhost = json!({ "name": "mcpx", "domains": ["*"], "routes": routes });
    let mut per_filter = serde_json::Map::new();
    if let Some(cors) = cors_policy(config) {
        per_filter.insert("envoy.filters.http.cors".into(), cors);
    }
    if let Some(rl) = rate_limit_policy(config) {
        per_filter.insert("envoy.filters.http.local_ratelimit".into(), rl);
    }
    if !per_filter.is_empty() {
        vhost["typed_per_filter_config"] = Value::Object(per_filter);
    }
    Ok(json!({ "name": "mcpx", "virtual_hosts": [vhost] }))
}

/// How long an HTTP backend may stay silent, before its answer or inside a
/// stream: its `request_timeout`, else an hour. A stdio server's deadline is
/// kept by the bridge (which answers 504 itself), so its route keeps the hour.
fn backend_idle_timeout(server: &ServerConfig) -> String {
    match (server.transport, server.request_timeout) {
        (Transport::Http, Some(t)) => proto_duration(t.as_millis()),
        _ => "3600s".to_string(),
    }
}

fn server_route(config: &Config, name: &str) -> Result<Value, String> {
    let server = config.server(name).ok_or_else(|| format!("unknown server {name}"))?;
    let (authority, path) = match server.transport {
        Transport::Http => {
            let url = server.primary_url().ok_or_else(|| format!("servers.{name}.url is missing"))?;
            let u = BackendUrl::parse(url).map_err(|e| format!("servers.{name}.url: {e}"))?;
            (authority_of(&u), u.path)
        }
        Transport::Stdio => ("127.0.0.1".to_string(), format!("/mcp/{name}")),
    };
    let mut route = json!({
        "match": { "path": format!("/mcp/{name}") },
        "route": {
            "cluster": cluster_name(name),
            // Keep the backend's own path: /mcp/demo -> http://h:3001/mcp.
            "prefix_rewrite": path,
            // Backends that check Host (DNS-rebinding defences) see their own.
            "host_rewrite_literal": authority,
            // Streams (SSE) may outlive ordinary timeouts; idleness still ends them.
            "timeout": "0s",
            "idle_timeout": backend_idle_timeout(server),
        },
        "request_headers_to_remove": INTERNAL_HEADERS,
    });
    if server.endpoints.len() > 1 {
        // Each replica sees its own host name (set on its endpoint), not the first one's.
        let r = &mut route["route"];
        r.as_object_mut().map(|o| o.remove("host_rewrite_literal"));
        r["auto_host_rewrite"] = json!(true);
    }
    if affinity::needed(config) {
        if let Some(off) = affinity::route_config(server) {
            route["typed_per_filter_config"] = json!({ affinity::FILTER: off });
        }
    }
    if global_rl::is_global(config) {
        route["route"]["rate_limits"] = global_rl::route_rate_limits(config);
    }
    Ok(route)
}

pub fn clusters(config: &Config, opts: &RenderOptions) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> =
        config.servers.iter().map(|s| server_cluster(config, &s.name, opts)).collect::<Result<_, _>>()?;
    out.push(admin_cluster(opts));
    if let Some(c) = tracing_cluster(config)? {
        out.push(c);
    }
    out.extend(jwks_cluster(config)?);
    out.extend(global_rl::cluster(config)?);
    Ok(out)
}

/// OAuth: the cluster the filter fetches the JWKS through. Over https the
/// authorization server's certificate is verified (system CA bundle, or
/// SSL_CERT_FILE) against its host name: forged keys would forge identities.
pub fn jwks_cluster(config: &Config) -> Result<Option<Value>, String> {
    let a = &config.auth;
    let Some(o) = a.oauth.as_ref().filter(|_| a.enabled && a.kind == AuthType::Oauth) else {
        return Ok(None);
    };
    let cluster = o.jwks_cluster.as_deref().unwrap_or(DEFAULT_JWKS_CLUSTER);
    let src = JwksSource::parse(&o.jwks_uri, cluster).map_err(|e| format!("auth.oauth.jwks_uri: {e}"))?;
    let u = BackendUrl::parse(&o.jwks_uri).map_err(|e| format!("auth.oauth.jwks_uri: {e}"))?;
    let is_ip = u.host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "name": src.cluster,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": src.cluster,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(&u.host, u.port) } }] }],
        },
    });
    if u.tls {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": u.host,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": { "filename": system_ca_bundle() },
                        "match_typed_subject_alt_names": [{ "san_type": "DNS", "matcher": { "exact": u.host } }],
                    },
                },
            },
        });
    }
    Ok(Some(cluster))
}

/// The CA bundle Envoy verifies the authorization server with.
fn system_ca_bundle() -> String {
    if let Ok(f) = std::env::var("SSL_CERT_FILE") {
        return f;
    }
    const CANDIDATES: [&str; 4] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
        "/etc/ssl/ca-bundle.pem",
    ];
    CANDIDATES.iter().find(|p| std::path::Path::new(p).exists()).unwrap_or(&CANDIDATES[0]).to_string()
}

/// `host[:port]` as a Host header names it (the port only when not the default).
fn authority_of(u: &BackendUrl) -> String {
    let default_port = if u.tls { 443 } else { 80 };
    let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
    if u.port == default_port {
        host
    } else {
        format!("{host}:{}", u.port)
    }
}

fn server_cluster(config: &Config, name: &str, opts: &RenderOptions) -> Result<Value, String> {
    let server = config.server(name).ok_or_else(|| format!("unknown server {name}"))?;
    let backends: Vec<BackendUrl> = match server.transport {
        Transport::Http => {
            let urls = server.backend_urls();
            if urls.is_empty() {
                return Err(format!("servers.{name}.url is missing"));
            }
            urls.iter()
                .map(|u| BackendUrl::parse(u).map_err(|e| format!("servers.{name}.url: {e}")))
                .collect::<Result<_, _>>()?
        }
        Transport::Stdio => {
            let b = opts
                .bridge
                .ok_or_else(|| format!("servers.{name} is a stdio server but no bridge address was given"))?;
            vec![BackendUrl { tls: false, host: b.ip().to_string(), port: b.port(), path: String::new() }]
        }
    };
    let several = backends.len() > 1;
    let lb_endpoints: Vec<Value> = backends
        .iter()
        .map(|u| {
            let mut e = json!({ "endpoint": { "address": socket_address(&u.host, u.port) } });
            if several {
                // Read by the route's `auto_host_rewrite`: each replica gets its own Host.
                e["endpoint"]["hostname"] = json!(authority_of(u));
            }
            e
        })
        .collect();
    let all_ip = backends.iter().all(|u| u.host.parse::<std::net::IpAddr>().is_ok());
    let (host, tls) = backends.first().map(|u| (u.host.clone(), u.tls)).unwrap_or_default();
    let mut cluster = json!({
        "name": cluster_name(name),
        // STRICT_DNS: every address a name resolves to is a host (a Kubernetes Service's pods).
        "type": if all_ip { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": { "cluster_name": cluster_name(name), "endpoints": [{ "lb_endpoints": lb_endpoints }] },
    });
    circuit_breaker(config, server, &mut cluster);
    if tls {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
            },
        });
        if several {
            // One SNI per replica: the Host header each one gets.
            cluster["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "upstream_http_protocol_options": { "auto_sni": true },
                    "explicit_http_config": { "http_protocol_options": {} },
                },
            });
        }
    }
    Ok(cluster)
}

// ---------------------------------------------------------------------------
// Operations (docs/operations.md): rate limits, circuit breaker, audit, metrics, CORS,
// tracing. Envoy does each job; the filter supplies the MCP attributes.
// ---------------------------------------------------------------------------

/// The Envoy cluster for the admin interface: only `GET /metrics` is routed
/// to it (rewritten to `/stats/prometheus`), never other admin paths.
pub const ADMIN_CLUSTER: &str = "mcpx_admin";
/// The OTLP/HTTP collector cluster.
pub const OTEL_CLUSTER: &str = "mcpx_otel";
const RATE_LIMIT_STATS: &str = "mcpx_rate_limit";

/// A protobuf JSON duration (`1.250s`).
fn proto_duration(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

fn percent(p: f64) -> Value {
    json!({ "numerator": p.round() as u64, "denominator": "HUNDRED" })
}

/// A token bucket of `burst` tokens refilled at `rps` per second.
fn token_bucket(rps: u32, burst: u32) -> Value {
    json!({ "max_tokens": burst, "tokens_per_fill": rps, "fill_interval": "1s" })
}

/// The HCM local rate limit filter: without a bucket of its own it passes
/// everything; the virtual host's policy ([`rate_limit_policy`]) limits.
pub fn local_rate_limit_filter() -> Value {
    json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": RATE_LIMIT_STATS,
        },
    })
}

/// The rate limit policy of the virtual host (one bucket set shared by all
/// routes and all worker threads). The global bucket (`rps`, `burst`) is a
/// descriptor charged `x-mcpx-hits` tokens (Envoy `hits_addend`): one per
/// JSON-RPC message, so a batch of N costs what N single requests cost. With
/// `per_tool`, one bucket per (server, tool), keyed on the `x-mcpx-tool:
/// server/tool` header and charged `x-mcpx-tool-hits` tokens (one per call;
/// absent, `x-mcpx-hits`: the filter sets it only when the two differ).
/// The filter sets all three from the parsed body (clients' copies are
/// removed on entry). Requests the filter set no cost on (not MCP) fall to
/// the default bucket, of the same size.
pub fn rate_limit_policy(config: &Config) -> Option<Value> {
    let rl = &config.rate_limit;
    if !rl.enabled || global_rl::is_global(config) {
        return None;
    }
    let mut policy = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": RATE_LIMIT_STATS,
        "token_bucket": token_bucket(rl.rps, rl.burst),
        "filter_enabled": { "default_value": percent(100.0) },
        "filter_enforced": { "default_value": percent(100.0) },
        // MCP requests are charged through the global descriptor below.
        "always_consume_default_token_bucket": false,
    });
    // Wildcard value: one bucket per tool key / client key.
    let descriptors: Vec<Value> = buckets::buckets(config)
        .iter()
        .map(|b| {
            let value = if b.value_header.is_some() { "" } else { buckets::GLOBAL_VALUE };
            json!({ "entries": [{ "key": b.key, "value": value }], "token_bucket": token_bucket(b.rps, b.burst) })
        })
        .collect();
    policy["rate_limits"] = Value::Array(buckets::actions(config));
    policy["descriptors"] = Value::Array(descriptors);
    if rl.per_tool || rl.per_client {
        // Per-client buckets: one per identity (evicting one would refill
        // it), in whole blocks like the tool buckets.
        let clients = if rl.per_client {
            config.auth.clients.len().div_ceil(TOOL_BUCKET_BLOCK).max(1) * TOOL_BUCKET_BLOCK
        } else {
            0
        };
        policy["max_dynamic_descriptors"] = json!(max_tool_buckets(config) + clients);
    }
    Some(policy)
}

/// Enough dynamic buckets that the LRU never evicts (an evicted bucket comes
/// back full: a reset). Per server the filter emits at most: one key per
/// configured tool name (the server's own lists and rules and every client
/// override for it, after label sanitising), one per learned tool
/// (`MAX_LEARNED_TOOLS`), and `server/_other`.
///
/// The configured part is rounded up to whole blocks of
/// [`TOOL_BUCKET_BLOCK`] so that editing an allow or deny list leaves the
/// route configuration, and with it every bucket, untouched: Envoy rebuilds
/// all buckets full whenever the route configuration changes.
pub fn max_tool_buckets(config: &Config) -> usize {
    let configured: usize = config.servers.iter().map(|s| configured_tool_labels(config, &s.name).len()).sum();
    config.servers.len() * (ops::MAX_LEARNED_TOOLS + 1)
        + configured.div_ceil(TOOL_BUCKET_BLOCK).max(1) * TOOL_BUCKET_BLOCK
}

/// See [`max_tool_buckets`]. The LRU's memory grows with the keys in use,
/// not with its cap, so headroom costs nothing.
pub const TOOL_BUCKET_BLOCK: usize = 1024;

/// The distinct rate-limit labels of the tool names the config names for
/// `server` (the names `ops::is_configured_tool` accepts).
fn configured_tool_labels(config: &Config, server: &str) -> std::collections::BTreeSet<String> {
    let names = |p: &mcpx_filter::config::PolicyConfig| -> Vec<String> {
        p.allow_tools.iter().chain(&p.deny_tools).chain(p.tool_rules.keys()).map(|t| names::label(t)).collect()
    };
    let own = config.server(server).map(|s| names(&s.policy)).unwrap_or_default();
    let overrides = config.clients.values().filter_map(|c| c.servers.get(server)).flat_map(names);
    own.into_iter().chain(overrides).collect()
}

/// `/metrics` on the main listener: exactly this path, to admin's
/// `/stats/prometheus`. Scrapes do not spend the MCP budget: the route has
/// its own bucket (Envoy requires one on a per-route policy).
fn metrics_route(config: &Config) -> Value {
    let mut route = json!({
        "match": { "path": names::METRICS_PATH },
        "route": { "cluster": ADMIN_CLUSTER, "prefix_rewrite": "/stats/prometheus", "timeout": "10s" },
    });
    if config.rate_limit.enabled && !global_rl::is_global(config) {
        route["typed_per_filter_config"] = json!({ "envoy.filters.http.local_ratelimit": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "mcpx_metrics",
            "token_bucket": token_bucket(50, 50),
            "filter_enabled": { "default_value": percent(100.0) },
            "filter_enforced": { "default_value": percent(100.0) },
        } });
    }
    route
}

fn admin_cluster(opts: &RenderOptions) -> Value {
    json!({
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address":
                socket_address(&opts.admin.ip().to_string(), opts.admin.port()) } }] }],
        },
    })
}

/// Label names for the filter's `mcpx_*` series: each `.key.value` pair of
/// the stat name becomes `key="value"` (group 1 is cut out of the name,
/// group 2 is the value; pairs are skipped lazily so a value can never be
/// mistaken for a key).
pub use names::METRIC_LABELS;

pub fn stats_config() -> Value {
    let tags: Vec<Value> = METRIC_LABELS
        .iter()
        .map(|k| {
            json!({
                "tag_name": k,
                "regex": format!(r"^wasmcustom\.{}[a-z_]+(?:\.[a-z_]+\.[^.]+)*?(\.{k}\.([^.]+))", names::METRIC_PREFIX),
            })
        })
        .collect();
    json!({ "stats_tags": tags })
}

/// Outlier detection as the circuit breaker (docs/operations.md): `failure_threshold`
/// consecutive 5xx or transport errors eject the failing host (one replica
/// of several, or the only one) for `cooldown`; with panic threshold 0 an
/// ejected host gets no traffic, so the other replicas serve alone, and when
/// every host is ejected Envoy answers 503 at once. After `cooldown` the host is un-ejected and
/// traffic flows again (Envoy has no half-open request cap: see
/// docs/operations.md for how `half_open_max` maps).
fn circuit_breaker(config: &Config, server: &ServerConfig, cluster: &mut Value) {
    let cb = &config.circuit_breaker;
    // `max_in_flight` bounds requests in flight and those queued for a
    // connection alike (HTTP/1 upstreams queue when every connection is
    // busy); Envoy's defaults otherwise. `track_remaining` exposes headroom.
    let n = server.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    cluster["circuit_breakers"] = json!({ "thresholds": [{
        "priority": "DEFAULT", "max_connections": n, "max_pending_requests": n,
        "max_requests": n, "max_retries": 3, "track_remaining": true }] });
    if !cb.enabled {
        return;
    }
    let cooldown_ms = cb.cooldown.as_millis();
    // Un-ejection happens on the interval tick: keep it well below the cooldown.
    let interval_ms = (cooldown_ms / 4).clamp(100, 10_000);
    cluster["outlier_detection"] = json!({
        "consecutive_5xx": cb.failure_threshold,
        "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": cb.failure_threshold,
        "enforcing_consecutive_gateway_failure": 100,
        // Connect failures and resets count as 5xx (transport errors).
        "split_external_local_origin_errors": false,
        "interval": proto_duration(interval_ms),
        "base_ejection_time": proto_duration(cooldown_ms),
        // Envoy multiplies the ejection time by the number of ejections;
        // capping it keeps every open period at `cooldown`.
        "max_ejection_time": proto_duration(cooldown_ms),
        "max_ejection_percent": 100,
        "enforcing_success_rate": 0,
        "enforcing_failure_percentage": 0,
    });
    // Without this a single ejected host puts the LB in panic mode and it
    // keeps getting traffic (panic mode ignores host health).
    cluster["common_lb_config"] = json!({ "healthy_panic_threshold": { "value": 0.0 } });
}

/// The access-log command for an attribute the filter sets, by its short
/// name (`decision` for `mcp_decision`).
fn filter_state(short: &str) -> String {
    format!("%FILTER_STATE({}:PLAIN)%", attr::filter_state_key(&format!("mcp_{short}")))
}

/// The `time` of an audit line: Envoy's default `START_TIME` form is already
/// RFC 3339 UTC with milliseconds (`2026-11-24T20:10:01.123Z`, the same text
/// as `%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%`) and costs less than a custom
/// format, which is parsed per line (measured 0.08 vs 0.19 µs per value).
const AUDIT_TIME: &str = "%START_TIME%";

/// The audit log (docs/operations.md): one JSON line per MCP request, written by Envoy
/// from the attributes the filter sets as filter state.
pub fn audit_format() -> Value {
    let fs = filter_state;
    json!({
        "time": AUDIT_TIME,
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
        "time": AUDIT_TIME,
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

/// CORS runs first so an allowed preflight is answered by Envoy; the filter
/// refuses every other `Origin` with 403 (so a disallowed preflight never
/// reaches a backend).
pub fn cors_filter() -> Value {
    json!({
        "name": "envoy.filters.http.cors",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" },
    })
}

pub fn cors_policy(config: &Config) -> Option<Value> {
    let cors = config.cors.as_ref()?;
    let origins: Vec<Value> = cors
        .allowed_origins
        .iter()
        .map(|o| {
            if o == "*" {
                json!({ "safe_regex": { "regex": ".*" } })
            } else {
                json!({ "exact": o, "ignore_case": true })
            }
        })
        .collect();
    let mut allow_headers = vec![
        "authorization",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "x-request-id",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    if let Some(h) = &config.auth.header {
        allow_headers.push(h.to_ascii_lowercase());
    } else {
        allow_headers.push("x-api-key".into());
    }
    Some(json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": origins,
        "allow_methods": "GET, POST, DELETE, OPTIONS",
        "allow_headers": allow_headers.join(", "),
        "expose_headers": "mcp-session-id, mcp-protocol-version, x-request-id, www-authenticate, retry-after",
        "max_age": "600",
    }))
}

/// The OTLP/HTTP endpoint split into (host, port, tls, path); the path
/// defaults to the OTLP traces path.
fn otlp_endpoint(endpoint: &str) -> Result<(String, u16, bool, String), String> {
    let tls = endpoint.starts_with("https://");
    let rest = endpoint.trim_start_matches("https://").trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let u = BackendUrl::parse(&format!("{}://{authority}", if tls { "https" } else { "http" }))
        .map_err(|e| format!("tracing.endpoint: {e}"))?;
    let path = if path.is_empty() || path == "/" { "/v1/traces".to_string() } else { path.to_string() };
    Ok((u.host, u.port, tls, path))
}

/// Envoy's OpenTelemetry tracer, with the MCP attributes on every span.
pub fn tracing(config: &Config) -> Value {
    let t = &config.tracing;
    let Some(endpoint) = t.endpoint.as_deref().filter(|_| t.enabled) else { return Value::Null };
    let Ok((host, port, tls, path)) = otlp_endpoint(endpoint) else { return Value::Null };
    let scheme = if tls { "https" } else { "http" };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let tags: Vec<Value> = ["server", "method", "tool", "client", "decision"]
        .iter()
        .map(|k| json!({ "tag": format!("mcp.{k}"), "value": filter_state(k) }))
        .collect();
    json!({
        "random_sampling": { "value": t.sample_ratio * 100.0 },
        "custom_tags": tags,
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "service_name": t.service_name,
                "http_service": {
                    "http_uri": { "uri": format!("{scheme}://{host}:{port}{path}"), "cluster": OTEL_CLUSTER, "timeout": "2s" },
                },
            },
        },
    })
}

fn tracing_cluster(config: &Config) -> Result<Option<Value>, String> {
    let t = &config.tracing;
    let Some(endpoint) = t.endpoint.as_deref().filter(|_| t.enabled) else { return Ok(None) };
    let (host, port, tls, _) = otlp_endpoint(endpoint)?;
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut c = json!({
        "name": OTEL_CLUSTER,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "2s",
        "load_assignment": { "cluster_name": OTEL_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(&host, port) } }] }] },
    });
    if tls {
        c["transport_socket"] = json!({ "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": host } });
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpx_filter::config::Mode;

    fn opts() -> RenderOptions {
        RenderOptions {
            listen: ("127.0.0.1".into(), 8080),
            admin: "127.0.0.1:9901".parse().unwrap(),
            wasm_path: "/x/mcpx_filter.wasm".into(),
            bridge: Some("127.0.0.1:7000".parse().unwrap()),
            control: Some("/run/mcpx/control.sock".into()),
        }
    }

    fn render(yaml: &str) -> Value {
        bootstrap(&Config::from_yaml(yaml, Mode::Gateway).unwrap(), &opts()).unwrap()
    }

    #[test]
    fn routes_keep_the_backend_path() {
        let b = render("servers:\n  - name: demo\n    url: http://localhost:3001\n  - name: api\n    url: https://api.example.com/v1/mcp\n");
        let routes = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["path"], "/metrics");
        assert_eq!(routes[1]["match"]["path"], "/mcp/demo");
        assert_eq!(routes[1]["route"]["prefix_rewrite"], "/mcp");
        assert_eq!(routes[1]["route"]["host_rewrite_literal"], "localhost:3001");
        assert_eq!(routes[2]["route"]["prefix_rewrite"], "/v1/mcp");
        assert_eq!(routes[2]["route"]["host_rewrite_literal"], "api.example.com");
        assert_eq!(routes[3]["direct_response"]["status"], 404);
        let clusters = &b["static_resources"]["clusters"];
        assert_eq!(clusters[0]["type"], "STRICT_DNS");
        assert_eq!(clusters[1]["transport_socket"]["typed_config"]["sni"], "api.example.com");
    }

    #[test]
    fn wasm_filter_is_fail_closed_and_can_pause() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\n");
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let wasm = &hcm["http_filters"][0]["typed_config"]["config"];
        assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
        assert_eq!(wasm["failure_policy"], "FAIL_RELOAD");
        assert_eq!(hcm["always_set_request_id_in_response"], true);
        // The plugin configuration is what the filter accepts.
        let text = wasm["configuration"]["value"].as_str().unwrap();
        mcpx_filter::gateway::Gateway::from_plugin_config(text).unwrap();
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STATIC");
    }

    #[test]
    fn secrets_are_sealed_and_jwks_gets_a_verified_cluster() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\nauth:\n  enabled: true\n  token: top-secret-value\n");
        let text = serde_json::to_string(&b).unwrap();
        assert!(!text.contains("top-secret-value"));
        assert!(text.contains("sha256:"));
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\nauth:\n  enabled: true\n  type: oauth\n  oauth:\n    resource: https://gw.example.com/mcp\n    jwks_uri: https://auth.example.com/.well-known/jwks.json\n    issuer: https://auth.example.com\n");
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let c = clusters.iter().find(|c| c["name"] == "mcpx_jwks").expect("a mcpx_jwks cluster");
        let tls = &c["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "auth.example.com");
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "auth.example.com"
        );
    }

    #[test]
    fn health_probes_use_the_route_rewrites() {
        let yaml = "servers:\n  - name: a\n    url: http://localhost:3001\n  - name: b\n    url: https://[::1]/v1/mcp\n  - name: c\n    transport: stdio\n    command: npx\n";
        let config = Config::from_yaml(yaml, Mode::Gateway).unwrap();
        let b = bootstrap(&config, &opts()).unwrap();
        let routes = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"];
        for s in &config.servers {
            let t = mcpx_filter::health::target(s).unwrap();
            let path = format!("/mcp/{}", s.name);
            let route = routes.as_array().unwrap().iter().find(|r| r["match"]["path"] == path.as_str()).unwrap();
            assert_eq!(route["route"]["cluster"], t.cluster);
            assert_eq!(route["route"]["prefix_rewrite"], t.path);
            assert_eq!(route["route"]["host_rewrite_literal"], t.authority);
        }
    }

    #[test]
    fn stdio_servers_go_to_the_bridge() {
        let b = render("servers:\n  - name: gh\n    transport: stdio\n    command: npx\n");
        let c = &b["static_resources"]["clusters"][0];
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            7000
        );
    }

    #[test]
    fn control_listener_shares_the_vm_on_an_owner_only_socket() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\n");
        let listeners = b["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 2);
        let wasm = |l: &Value| {
            l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"].clone()
        };
        let (main, control) = (wasm(&listeners[0]), wasm(&listeners[1]));
        assert_eq!(main["root_id"], "mcpx");
        assert_eq!(control["root_id"], CONTROL_ROOT_ID);
        assert_eq!(main["vm_config"], control["vm_config"]);
        assert_eq!(listeners[1]["address"]["pipe"], json!({"path": "/run/mcpx/control.sock", "mode": 0o600}));
        assert_eq!(listeners[0]["enable_reuse_port"], false, "a taken port must fail to bind");
        assert!(control_listener("/x.wasm", "control.sock").is_err());
    }

    fn hcm(b: &Value) -> &Value {
        &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    const OPS: &str = "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n    policy: { allow_tools: [echo] }\n\
        rate_limit: { enabled: true, rps: 7, burst: 9, per_tool: true, tool_rps: 2, tool_burst: 3 }\n\
        circuit_breaker: { enabled: true, failure_threshold: 4, cooldown: 1500ms }\n\
        cors: { allowed_origins: [\"https://app.example.com\"] }\n\
        tracing: { enabled: true, endpoint: \"http://otel:4318\", sample_ratio: 0.25 }\n\
        audit: { output: /var/log/mcpx-audit.log }\n";

    #[test]
    fn filter_order_is_cors_wasm_ratelimit_router() {
        let b = render(OPS);
        let names: Vec<&str> =
            hcm(&b)["http_filters"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.cors",
                "envoy.filters.http.wasm",
                "envoy.filters.http.local_ratelimit",
                "envoy.filters.http.router"
            ]
        );
        // Without the blocks, neither CORS nor rate limiting is rendered.
        let plain = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n");
        assert_eq!(hcm(&plain)["http_filters"].as_array().unwrap().len(), 2);
        assert!(hcm(&plain).get("tracing").is_none());
    }

    #[test]
    fn rate_limits_are_global_plus_per_tool_wildcard() {
        let b = render(OPS);
        let rl = &hcm(&b)["route_config"]["virtual_hosts"][0]["typed_per_filter_config"]
            ["envoy.filters.http.local_ratelimit"];
        assert_eq!(rl["token_bucket"], json!({"max_tokens": 9, "tokens_per_fill": 7, "fill_interval": "1s"}));
        assert_eq!(rl["always_consume_default_token_bucket"], false);
        // The global bucket is a descriptor charged one token per message.
        assert_eq!(rl["rate_limits"][0]["actions"][0]["generic_key"]["descriptor_key"], "mcpx_global");
        assert_eq!(rl["rate_limits"][0]["hits_addend"]["format"], "%REQ(x-mcpx-hits)%");
        assert_eq!(
            rl["descriptors"][0]["token_bucket"],
            json!({"max_tokens": 9, "tokens_per_fill": 7, "fill_interval": "1s"})
        );
        // Per tool: one wildcard bucket per tool, charged one token per call.
        assert_eq!(rl["rate_limits"][1]["actions"][0]["request_headers"]["header_name"], "x-mcpx-tool");
        assert_eq!(rl["rate_limits"][1]["hits_addend"]["format"], "%REQ(x-mcpx-tool-hits?x-mcpx-hits)%");
        assert_eq!(rl["descriptors"][1]["entries"][0]["value"], "");
        assert_eq!(rl["descriptors"][1]["token_bucket"]["max_tokens"], 3);
        assert!(rl["max_dynamic_descriptors"].as_u64().unwrap() > ops::MAX_LEARNED_TOOLS as u64);
    }

    /// The keys the filter can emit for `server`: what `ops::tool_label`
    /// gives every configured name, every learned name and any other name.
    fn possible_keys(config: &Config, server: &str, learned: &[String]) -> std::collections::BTreeSet<String> {
        let mut names: Vec<String> = learned.to_vec();
        let s = config.server(server).unwrap();
        let policies = std::iter::once(&s.policy).chain(config.clients.values().filter_map(|c| c.servers.get(server)));
        for p in policies {
            names.extend(p.allow_tools.iter().chain(&p.deny_tools).chain(p.tool_rules.keys()).cloned());
        }
        names.push("a-tool-nobody-named".into());
        names
            .iter()
            .map(|n| {
                let known = ops::is_configured_tool(config, server, n) || learned.contains(n);
                ops::rate_limit_key(server, &ops::tool_label(n, known))
            })
            .collect()
    }

    #[test]
    fn tool_bucket_cap_counts_every_key_including_client_overrides() {
        // 3 server-configured names and 2 more named only by client overrides.
        let yaml =
            "servers:\n  - name: a\n    url: http://h:1\n    policy: { allow_tools: [t1, t2], deny_tools: [t3] }\n\
            clients:\n  bot:\n    servers:\n      a: { allow_tools: [t1, c1], deny_tools: [c2] }\n\
            rate_limit: { enabled: true, per_tool: true }\n";
        let config = Config::from_yaml(yaml, Mode::Gateway).unwrap();
        assert_eq!(configured_tool_labels(&config, "a").len(), 5);
        let learned: Vec<String> = (0..ops::MAX_LEARNED_TOOLS).map(|i| format!("learned{i}")).collect();
        let keys = possible_keys(&config, "a", &learned);
        assert_eq!(keys.len(), ops::MAX_LEARNED_TOOLS + 5 + 1, "learned + configured + _other");
        assert!(max_tool_buckets(&config) >= keys.len());
        // Past a whole block of configured names the cap still covers them all.
        let many: Vec<String> = (0..TOOL_BUCKET_BLOCK + 3).map(|i| format!("d{i}")).collect();
        let yaml = format!(
            "servers:\n  - name: a\n    url: http://h:1\n    policy: {{ deny_tools: [{}] }}\n\
             clients:\n  bot:\n    servers:\n      a: {{ allow_tools: [x1, x2] }}\n",
            many.join(", ")
        );
        let config = Config::from_yaml(&yaml, Mode::Gateway).unwrap();
        let keys = possible_keys(&config, "a", &learned);
        assert_eq!(keys.len(), ops::MAX_LEARNED_TOOLS + TOOL_BUCKET_BLOCK + 3 + 2 + 1);
        assert!(max_tool_buckets(&config) >= keys.len(), "{} < {}", max_tool_buckets(&config), keys.len());
    }

    #[test]
    fn the_renderer_and_the_filter_label_a_tool_alike() {
        // Long, dotted and non-ASCII names: the renderer's bucket count and the
        // filter's labels (metrics, rate-limit key) must be the same strings.
        let long = "t".repeat(100);
        let odd = ["a.b/c", "é-tool", long.as_str(), &format!("{long}x")];
        let yaml = format!(
            "servers:\n  - name: a\n    url: http://h:1\n    policy: {{ allow_tools: [{}] }}\n",
            odd.map(|n| format!("{n:?}")).join(", ")
        );
        let config = Config::from_yaml(&yaml, Mode::Gateway).unwrap();
        let filter: std::collections::BTreeSet<String> = odd
            .iter()
            .map(|n| {
                assert!(ops::is_configured_tool(&config, "a", n));
                ops::tool_label(n, true)
            })
            .collect();
        assert_eq!(configured_tool_labels(&config, "a"), filter);
        assert_eq!(filter.len(), 3, "the two names that share their first 64 characters share a label");
        assert!(filter.iter().all(|l| l.len() <= names::MAX_LABEL_CHARS));
        // Every attribute the access log and the tracer read is one the filter sets.
        let text =
            serde_json::to_string(&json!([audit_format(), integrity_event_format(), access_log(&config)])).unwrap();
        for key in text.split("wasm.").skip(1) {
            let name: String = key.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            assert!(attr::ALL.contains(&name.as_str()), "{name} is not an attribute the filter sets");
        }
    }

    #[test]
    fn a_policy_only_change_leaves_the_routes_and_so_the_buckets_alone() {
        let routes = |policy: &str, clients: &str| {
            let yaml = format!(
                "servers:\n  - name: a\n    url: http://h:1\n    policy: {policy}\n{clients}\
                 rate_limit: {{ enabled: true, rps: 5, burst: 5, per_tool: true, tool_rps: 1, tool_burst: 2 }}\n"
            );
            route_config(&Config::from_yaml(&yaml, Mode::Gateway).unwrap()).unwrap()
        };
        let base = routes("{ allow_tools: [echo, add] }", "");
        for (policy, clients) in [
            ("{ allow_tools: [echo, add], deny_tools: [add] }", ""),
            ("{ allow_tools: [echo, add], deny_tools: [add, x, y, z] }", ""),
            ("{ allow_tools: [echo] }", ""),
            ("{ allow_tools: [echo, add], tool_rules: { echo: { args: { m: { equals: hi } } } } }", ""),
            ("{ allow_tools: [echo, add] }", "clients:\n  bot:\n    servers:\n      a: { deny_tools: [echo, q] }\n"),
        ] {
            assert_eq!(routes(policy, clients), base, "{policy} {clients}");
        }
    }

    #[test]
    fn hostile_network_defaults_are_rendered() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n");
        let h = hcm(&b);
        assert_eq!(h["request_headers_timeout"], "10.000s");
        assert_eq!(h["request_timeout"], "30.000s");
        assert_eq!(h["common_http_protocol_options"]["headers_with_underscores_action"], "DROP_HEADER");
        assert_eq!(h["http2_protocol_options"]["max_concurrent_streams"], 100);
        let mapper = &h["local_reply_config"]["mappers"][0];
        assert_eq!(mapper["filter"]["status_code_filter"]["comparison"]["value"]["default_value"], 408);
        assert_eq!(mapper["body_format_override"]["json_format"]["error"]["code"], REQUEST_TIMEOUT_CODE);
        let om = &b["overload_manager"]["resource_monitors"][0];
        assert_eq!(om["name"], "envoy.resource_monitors.global_downstream_max_connections");
        assert_eq!(om["typed_config"]["max_active_downstream_connections"], 10_000);
        // Operator access survives a connection flood; the main listener is limited.
        assert_eq!(b["admin"]["ignore_global_conn_limit"], true);
        let listeners = b["static_resources"]["listeners"].as_array().unwrap();
        assert!(listeners[0].get("ignore_global_conn_limit").is_none());
        assert_eq!(listeners[1]["ignore_global_conn_limit"], true);
        // Streams stay unbounded by the request timeout: routes keep no deadline.
        let route = &h["route_config"]["virtual_hosts"][0]["routes"][1];
        assert_eq!(route["route"]["timeout"], "0s");
        assert_eq!(route["route"]["idle_timeout"], "3600s");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["circuit_breakers"]["thresholds"][0]["max_requests"], 1024);

        // Per server: a silent HTTP backend is cut off after its
        // request_timeout; max_in_flight caps requests in flight and queued.
        let b = render(
            "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n    request_timeout: 1500ms\n    max_in_flight: 8\n",
        );
        let route = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"][1];
        assert_eq!(route["route"]["idle_timeout"], "1.500s");
        let t = &b["static_resources"]["clusters"][0]["circuit_breakers"]["thresholds"][0];
        assert_eq!((&t["max_requests"], &t["max_pending_requests"], &t["max_connections"]), (&json!(8), &json!(8), &json!(8)));

        // An API-key header with an underscore could never arrive.
        let c = Config::from_yaml(
            "servers:\n  - name: demo\n    url: http://h:1\nauth: { enabled: true, type: api_key, header: X_Api_Key, token: t }\n",
            Mode::Gateway,
        )
        .unwrap();
        let e = bootstrap(&c, &opts()).unwrap_err();
        assert!(e.starts_with("auth.header:") && e.contains("\"X-Api-Key\""), "{e}");

        let b = render(
            "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n\
             limits: { request_headers_timeout: 1500ms, request_timeout: 2m, max_connections: 64 }\n",
        );
        assert_eq!(hcm(&b)["request_headers_timeout"], "1.500s");
        assert_eq!(hcm(&b)["request_timeout"], "120.000s");
        assert_eq!(
            b["overload_manager"]["resource_monitors"][0]["typed_config"]["max_active_downstream_connections"],
            64
        );
    }

    #[test]
    fn breaker_is_outlier_detection_with_panic_threshold_zero() {
        let b = render(OPS);
        let c = &b["static_resources"]["clusters"][0];
        let od = &c["outlier_detection"];
        assert_eq!(od["consecutive_5xx"], 4);
        assert_eq!(od["base_ejection_time"], "1.500s");
        assert_eq!(od["max_ejection_time"], "1.500s");
        assert_eq!(od["max_ejection_percent"], 100);
        assert_eq!(c["common_lb_config"]["healthy_panic_threshold"]["value"], 0.0);
    }

    #[test]
    fn audit_metrics_cors_and_tracing() {
        let b = render(OPS);
        let log = &hcm(&b)["access_log"][0];
        assert_eq!(log["typed_config"]["path"], "/var/log/mcpx-audit.log");
        let fields = &log["typed_config"]["log_format"]["json_format"];
        for k in ["time", "request_id", "server", "method", "tool", "client", "client_ip", "decision", "reason"] {
            assert!(fields.get(k).is_some(), "{k}");
        }
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let admin = clusters.iter().find(|c| c["name"] == ADMIN_CLUSTER).unwrap();
        assert_eq!(
            admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            9901
        );
        let metrics = &hcm(&b)["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(metrics["match"], json!({"path": "/metrics"}));
        assert_eq!(metrics["route"]["prefix_rewrite"], "/stats/prometheus");
        let cors = &hcm(&b)["route_config"]["virtual_hosts"][0]["typed_per_filter_config"]["envoy.filters.http.cors"];
        assert_eq!(cors["allow_origin_string_match"][0]["exact"], "https://app.example.com");
        assert!(cors["expose_headers"].as_str().unwrap().contains("mcp-session-id"));
        let t = &hcm(&b)["tracing"];
        assert_eq!(t["random_sampling"]["value"], 25.0);
        assert_eq!(t["provider"]["typed_config"]["http_service"]["http_uri"]["uri"], "http://otel:4318/v1/traces");
        assert!(clusters.iter().any(|c| c["name"] == OTEL_CLUSTER && c["type"] == "STRICT_DNS"));
        let tags = b["stats_config"]["stats_tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["tag_name"] == "tool"));
    }

    #[test]
    fn otlp_endpoints_keep_a_given_path() {
        assert_eq!(otlp_endpoint("http://otel:4318").unwrap(), ("otel".into(), 4318, false, "/v1/traces".into()));
        assert_eq!(
            otlp_endpoint("https://collector.example.com/custom/traces").unwrap(),
            ("collector.example.com".into(), 443, true, "/custom/traces".into())
        );
        let c = Config::from_yaml(
            "servers:\n  - name: a\n    url: http://h:1\ntracing: { enabled: true, endpoint: \"http://[::1]:4318\" }\n",
            Mode::Gateway,
        )
        .unwrap();
        assert_eq!(
            tracing(&c)["provider"]["typed_config"]["http_service"]["http_uri"]["uri"],
            "http://[::1]:4318/v1/traces"
        );
    }
}
