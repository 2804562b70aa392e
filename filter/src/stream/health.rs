//! `GET /health` through the host: one `ping` per backend through its Envoy
//! cluster, all dispatched at once; the answers are judged and added up by
//! `crate::endpoints::health`.

use super::host::INTERNAL_FAILURE;
use super::{Body, Host};
use crate::endpoints::health::{self, Cache, Detail, ServerHealth};
use crate::envelope::Reply;
use crate::gateway::Gateway;
use std::cell::RefCell;
use std::time::Duration;

thread_local! {
    // One VM per worker thread: each worker keeps its own last results.
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

pub struct HealthCheck {
    detail: Detail,
    /// In config order; `None` while that server's probe is in flight.
    results: Vec<(String, Option<ServerHealth>)>,
    /// Dispatched calls: (token, index into `results`).
    pending: Vec<(u32, usize)>,
    started_ms: u64,
    /// The results came from the cache (so they are not stored again).
    cached: bool,
}

impl HealthCheck {
    /// Dispatches every probe. A probe that cannot even be sent (no url, no
    /// such cluster) is a result at once.
    pub fn start<H: Host>(host: &mut H, gateway: &Gateway, detail: Detail) -> Self {
        let started_ms = host.now_ms();
        let mut check = Self { detail, results: Vec::new(), pending: Vec::new(), started_ms, cached: false };
        let plan = health::plan(gateway.config());
        let names: Vec<String> = plan.iter().map(|(n, _)| n.clone()).collect();
        let cached = CACHE.with(|c| c.borrow().get(started_ms, &names).map(<[_]>::to_vec));
        if let Some(results) = cached {
            check.results = results.into_iter().map(|(n, r)| (n, Some(r))).collect();
            check.cached = true;
            return check;
        }
        for (i, (name, target)) in plan.into_iter().enumerate() {
            let result = match target {
                Err(why) => Some(ServerHealth::down(why, None)),
                Ok(t) => match host.http_call(
                    &t.cluster,
                    t.headers(),
                    Some(health::PING_BODY.as_bytes()),
                    Duration::from_millis(health::PROBE_TIMEOUT_MS),
                ) {
                    Ok(token) => {
                        check.pending.push((token, i));
                        None
                    }
                    Err(e) => Some(ServerHealth::down(
                        health::dispatch_failure(&t.cluster, e == INTERNAL_FAILURE, &e.to_string()),
                        None,
                    )),
                },
            };
            check.results.push((name, result));
        }
        check
    }

    pub fn done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes the answer to one probe; false if the token is not ours.
    pub fn on_response<H: Host>(&mut self, host: &mut H, token: u32, body_size: usize) -> bool {
        let Some(pos) = self.pending.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, index) = self.pending.swap_remove(pos);
        let latency = host.now_ms().saturating_sub(self.started_ms);
        // Only the two headers judged are read, as bytes: a backend's other
        // headers (or a non-UTF-8 content-type, read lossily) cannot break
        // the probe.
        let status = host.call_response_header(":status").and_then(|s| s.parse::<u16>().ok());
        let content_type = host.call_response_header("content-type");
        let body = host.body(Body::CallResponse, body_size);
        let result = ServerHealth::from_answer(status, content_type.as_deref(), &body, latency);
        if let Some(slot) = self.results.get_mut(index) {
            slot.1 = Some(result);
        }
        true
    }

    /// The answer, once [`HealthCheck::done`]; remembers the results.
    pub fn reply(&self) -> Reply {
        let results: Vec<(String, ServerHealth)> = self
            .results
            .iter()
            .map(|(name, r)| (name.clone(), r.clone().unwrap_or_else(|| ServerHealth::down("no answer", None))))
            .collect();
        let reply = health::report(&results, self.detail);
        if !self.cached {
            CACHE.with(|c| c.borrow_mut().put(self.started_ms, results));
        }
        reply
    }
}
