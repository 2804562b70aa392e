//! Fetching the OAuth key set (JWKS) through the host, once for all VMs.
//!
//! `on_tick` runs in every VM (the main thread's and each worker's),
//! so the VMs coordinate through shared data: a lease (the time of the last
//! fetch start, taken with compare-and-swap) lets one VM fetch per floor
//! interval, and the fetched document is published for the others, which
//! adopt it on their next tick. Fetches happen when a VM has no keys, when a
//! token named an unknown `kid`, and every `REFRESH_SECS`. The root context
//! (`glue/root.rs`) only calls in here with the proxy-wasm host.

use super::{Body, Host, Level};
use crate::auth::oauth::{OAuth, REFETCH_FLOOR_SECS};
use std::time::Duration;

/// How often each VM looks at shared data and decides whether to fetch.
pub const TICK: Duration = Duration::from_millis(250);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct JwksFetcher {
    /// Our fetch in flight: its token and when it started (secs).
    in_flight: Option<(u32, u64)>,
    /// The shared-data version of the document this VM has installed.
    seen_cas: Option<u32>,
}

/// Shared-data keys, per JWKS URI (a reload may point elsewhere).
pub fn data_key(o: &OAuth) -> String {
    format!("mcpx.jwks.doc:{}", o.jwks.uri)
}
pub fn lease_key(o: &OAuth) -> String {
    format!("mcpx.jwks.lease:{}", o.jwks.uri)
}

fn now_secs<H: Host>(host: &mut H) -> u64 {
    host.now_ms() / 1000
}

impl JwksFetcher {
    pub fn on_tick<H: Host>(&mut self, host: &mut H, o: &OAuth) {
        self.adopt_shared(host, o);
        let now = now_secs(host);
        if self.in_flight.is_some() || !o.fetch_wanted(now) || !take_lease(host, o, now) {
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", o.jwks.path.as_str()),
            (":authority", o.jwks.authority.as_str()),
            ("accept", "application/json"),
        ];
        match host.http_call(&o.jwks.cluster, headers, None, FETCH_TIMEOUT) {
            Ok(token) => self.in_flight = Some((token, now)),
            Err(e) => host.log(
                Level::Error,
                &format!(
                    "mcpx: cannot fetch the JWKS through Envoy cluster {:?} ({e}); is the cluster defined?",
                    o.jwks.cluster
                ),
            ),
        }
    }

    /// Installs the document another VM published, when it is new to us
    /// (also right after a reconfigure, so a reload does not wait for keys).
    pub fn adopt_shared<H: Host>(&mut self, host: &mut H, o: &OAuth) {
        let Ok(Some((bytes, cas))) = host.get(&data_key(o)) else { return };
        if cas.is_some() && cas == self.seen_cas {
            return;
        }
        self.seen_cas = cas;
        let Some((at, body)) = split_record(&bytes) else { return };
        if let Err(e) = o.install_jwks(body, at) {
            host.log(Level::Warn, &format!("mcpx: the shared JWKS could not be used: {e}"));
        }
    }

    /// Returns true when `token` was our fetch (handled here).
    pub fn on_response<H: Host>(&mut self, host: &mut H, o: &OAuth, token: u32, body_size: usize) -> bool {
        let Some((_, started)) = self.in_flight.filter(|(t, _)| *t == token) else {
            return false;
        };
        self.in_flight = None;
        let status = host.call_response_header(":status");
        let body = host.body(Body::CallResponse, body_size);
        if status.as_deref() != Some("200") {
            host.log(
                Level::Warn,
                &format!(
                    "mcpx: JWKS fetch from {} failed with HTTP {}; keeping the previous keys and retrying",
                    o.jwks.uri,
                    status.as_deref().unwrap_or("?")
                ),
            );
            return true;
        }
        // A fetch that started later may have finished first (a slow answer
        // under load): its document is the newer one, so ours must not
        // replace it, here or for the other VMs. Records carry the start time.
        let key = data_key(o);
        if let Ok(Some((bytes, _))) = host.get(&key) {
            if split_record(&bytes).is_some_and(|(at, _)| at > started) {
                host.log(Level::Info, "mcpx: a newer JWKS was published while this fetch ran; keeping it");
                self.adopt_shared(host, o);
                return true;
            }
        }
        match o.install_jwks(&body, started) {
            Ok(n) => {
                host.log(Level::Info, &format!("mcpx: loaded {n} signing key(s) from {}", o.jwks.uri));
                if host.set(&key, &record(started, &body), None).is_ok() {
                    // Remember our own version so we do not re-install it.
                    self.seen_cas = host.get(&key).ok().flatten().and_then(|(_, c)| c);
                }
            }
            Err(e) => host.log(Level::Warn, &format!("mcpx: JWKS from {} rejected: {e}", o.jwks.uri)),
        }
        true
    }
}

/// One fetch per floor interval for the whole Envoy: compare-and-swap the
/// time of the last fetch start.
fn take_lease<H: Host>(host: &mut H, o: &OAuth, now: u64) -> bool {
    let key = lease_key(o);
    let (last, cas) = match host.get(&key) {
        Ok(Some((v, cas))) => (std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u64>().ok()), cas),
        Ok(None) => (None, None),
        Err(_) => return false,
    };
    if last.is_some_and(|l| now < l.saturating_add(REFETCH_FLOOR_SECS)) {
        return false;
    }
    host.set(&key, now.to_string().as_bytes(), cas).is_ok()
}

/// A published record: `<secs the fetch started>\n<JWKS body>`.
pub fn record(fetched_at: u64, body: &[u8]) -> Vec<u8> {
    let mut record = format!("{fetched_at}\n").into_bytes();
    record.extend_from_slice(body);
    record
}

fn split_record(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let at = std::str::from_utf8(bytes.get(..nl)?).ok()?.parse().ok()?;
    Some((at, bytes.get(nl + 1..)?))
}
