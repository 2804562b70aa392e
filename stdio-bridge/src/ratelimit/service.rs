//! `mcpx ratelimit`: the bundled rate-limit service. It speaks Envoy's
//! `RateLimitService` gRPC protocol (`ShouldRateLimit`), takes its limits
//! from the same `mcpx.yaml` as the gateways, and counts with limitador
//! (Kuadrant's limiter) in Redis, so every gateway asking it shares one
//! budget. Any other service speaking the protocol (envoyproxy/ratelimit,
//! Limitador's own server) can take its place: docs/operations.md.
//!
//! A request is charged only if none of its buckets is over: all buckets are
//! checked first, then charged. Two gateways racing for the last token can
//! still both pass the check; the charge itself is atomic in Redis, so the
//! overshoot is bounded by the requests in flight at that instant.

use super::buckets::{self, Bucket, DOMAIN};
use crate::error::{Error, Result};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use limitador::limit::{Context, Limit, Predicate};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::{AsyncRateLimiter, CheckResult};
use mcpx_filter::config::Config;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The limitador limits of a config: one per bucket, keyed on the
/// descriptor key; buckets with a per-value key (tool, client) count each
/// value apart.
pub fn limits(config: &Config) -> Result<Vec<Limit>> {
    buckets::buckets(config)
        .iter()
        .map(|b| {
            let (max, seconds) = buckets::window(b.rps, b.burst);
            let cond =
                Predicate::parse(format!("key == '{}'", b.key)).map_err(|e| Error::internal(format!("{e:?}")))?;
            let vars: Vec<limitador::limit::Expression> = match b.value_header {
                Some(_) => vec!["value".try_into().map_err(|e| Error::internal(format!("{e:?}")))?],
                None => Vec::new(),
            };
            Ok(Limit::with_id(b.key, DOMAIN, max, seconds, [cond], vars))
        })
        .collect()
}

pub struct Service {
    limiter: AsyncRateLimiter,
    buckets: Vec<Bucket>,
    /// Whether the last check failed in Redis: errors are logged when the
    /// store goes down and when it comes back, not once per request.
    store_down: AtomicBool,
}

/// One descriptor of a request, resolved: its context for limitador and its cost.
struct Check {
    ctx: HashMap<String, String>,
    hits: u64,
}

impl Service {
    pub fn new(limiter: AsyncRateLimiter, config: &Config) -> Result<Self> {
        for l in limits(config)? {
            limiter.add_limit(l);
        }
        Ok(Self { limiter, buckets: buckets::buckets(config), store_down: AtomicBool::new(false) })
    }

    /// A descriptor we limit: exactly one entry whose key is a configured
    /// bucket. Anything else has no limit (the protocol's rule for
    /// descriptors a service has no configuration for).
    fn resolve(&self, d: &RateLimitDescriptor, request_hits: u32) -> Option<Check> {
        let [entry] = d.entries.as_slice() else { return None };
        let bucket = self.buckets.iter().find(|b| b.key == entry.key)?;
        if d.is_negative_hits {
            // A refund: never give budget back on a client's behalf.
            return None;
        }
        let hits =
            d.hits_addend.as_ref().map(|h| h.value).unwrap_or(if request_hits == 0 { 1 } else { request_hits.into() });
        let mut ctx = HashMap::new();
        ctx.insert("key".to_string(), bucket.key.to_string());
        ctx.insert("value".to_string(), entry.value.clone());
        Some(Check { ctx, hits })
    }

    async fn decide(&self, req: &RateLimitRequest) -> Result<RateLimitResponse, limitador::errors::LimitadorError> {
        let ns = DOMAIN.into();
        let checks: Vec<Option<Check>> = req.descriptors.iter().map(|d| self.resolve(d, req.hits_addend)).collect();
        let mut statuses = Vec::with_capacity(checks.len());
        let mut over = false;
        // Check every bucket before charging any: a refused request costs nothing.
        for c in &checks {
            let status = match c {
                Some(c) => {
                    let ctx: Context = c.ctx.clone().into();
                    let mut r = self.limiter.is_rate_limited(&ns, &ctx, c.hits).await?;
                    over |= r.limited;
                    status(&mut r)
                }
                None => ok_status(),
            };
            statuses.push(status);
        }
        if !over {
            for (c, s) in checks.iter().zip(statuses.iter_mut()) {
                let Some(c) = c else { continue };
                let ctx: Context = c.ctx.clone().into();
                let mut r = self.limiter.check_rate_limited_and_update(&ns, &ctx, c.hits).await?;
                over |= r.limited;
                *s = status(&mut r);
            }
        }
        let overall = if over { Code::OverLimit } else { Code::Ok };
        Ok(RateLimitResponse { overall_code: overall as i32, statuses, ..Default::default() })
    }
}

fn ok_status() -> DescriptorStatus {
    DescriptorStatus { code: Code::Ok as i32, ..Default::default() }
}

/// The descriptor's status: its limit, what is left and when the window
/// resets (Envoy turns that into `x-ratelimit-reset`, the Retry-After).
fn status(r: &mut CheckResult) -> DescriptorStatus {
    let code = if r.limited { Code::OverLimit } else { Code::Ok };
    let Some(counter) = r.counters.first() else { return DescriptorStatus { code: code as i32, ..Default::default() } };
    let window = counter.window().as_secs().max(1);
    let reset = counter.expires_in().unwrap_or(Duration::from_secs(window));
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            name: counter.id().unwrap_or_default().to_string(),
            // The protocol's units are whole seconds, minutes, ...: report the
            // window's per-second rate (the limit itself is enforced here).
            requests_per_unit: u32::try_from(counter.max_value() / window).unwrap_or(u32::MAX),
            unit: Unit::Second as i32,
        }),
        limit_remaining: u32::try_from(counter.remaining().unwrap_or(0)).unwrap_or(u32::MAX),
        duration_until_reset: Some(PbDuration {
            // Round up: a client told 0 s would retry into the same window.
            seconds: i64::try_from(reset.as_secs() + u64::from(reset.subsec_nanos() > 0)).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let req = request.into_inner();
        if req.domain != DOMAIN {
            // Another Envoy's domain: not ours to answer OK for (fail closed).
            return Err(tonic::Status::invalid_argument(format!(
                "unknown rate-limit domain {:?}; mcpx ratelimit serves {DOMAIN:?}",
                req.domain
            )));
        }
        match self.decide(&req).await {
            Ok(r) => {
                if self.store_down.swap(false, Ordering::Relaxed) {
                    eprintln!("mcpx ratelimit: counter store reachable again");
                }
                Ok(tonic::Response::new(r))
            }
            // Redis down or failing: Envoy applies rate_limit.failure_mode.
            Err(e) => {
                if !self.store_down.swap(true, Ordering::Relaxed) {
                    eprintln!("mcpx ratelimit: counter store unavailable, answering errors until it is back: {e}");
                }
                Err(tonic::Status::unavailable(format!("counter store unavailable: {e}")))
            }
        }
    }
}

/// The URL without its credentials, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// Redis calls give up quickly, and a lost connection is retried on the
/// next check rather than backed off for seconds: while Redis is down each
/// check fails within about a second (Envoy applies `failure_mode`), and the
/// first check after it returns reconnects.
fn redis_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_factor(50)
        .set_max_delay(200)
        .set_connection_timeout(Duration::from_millis(300))
        .set_response_timeout(Duration::from_millis(500))
}

/// Connects to Redis (waiting for it: a service started before its store
/// comes up must not exit) and serves until killed.
pub async fn serve(config: &Config, listen: SocketAddr, redis_url: &str) -> Result<()> {
    let shown = redact(redis_url);
    let mut warned = false;
    let client = redis::Client::open(redis_url).map_err(|e| Error::usage(format!("--redis {shown}: {e}")))?;
    let storage = loop {
        let connected = match redis::aio::ConnectionManager::new_with_config(client.clone(), redis_config()).await {
            Ok(cm) => AsyncRedisStorage::new_with_conn_manager(cm).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok(s) => break s,
            Err(e) if !warned => {
                eprintln!("mcpx ratelimit: waiting for Redis at {shown}: {e}");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    let service = Service::new(limiter, config)?;
    // Bound before saying so: "serving" is the readiness line.
    let incoming = tonic::transport::server::TcpIncoming::bind(listen)
        .map_err(|e| Error::io_other(format!("--listen {listen}: cannot listen: {e}")))?
        .with_nodelay(Some(true));
    eprintln!("mcpx ratelimit: serving domain {DOMAIN:?} on {listen} (counters in {shown})");
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(service))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| Error::network(format!("cannot serve on {listen}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpx_filter::config::Mode;

    #[test]
    fn one_limit_per_bucket_per_value_where_keyed() {
        let c = Config::from_yaml(
            "servers: [{ name: demo, url: 'http://127.0.0.1:1/mcp' }]\n\
             rate_limit: { enabled: true, rps: 1, burst: 5, per_tool: true, tool_rps: 2, tool_burst: 3 }\n",
            Mode::Gateway,
        )
        .unwrap();
        let l = limits(&c).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].max_value(), l[0].seconds()), (5, 5));
        assert!(l[0].variables().is_empty());
        assert_eq!((l[1].max_value(), l[1].seconds()), (4, 2));
        assert!(l[1].variables().contains("value"));
    }

    #[test]
    fn redis_credentials_never_shown() {
        assert_eq!(redact("redis://user:pw@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }
}
