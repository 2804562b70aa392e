//! The root context: parses the plugin configuration once per (re)configure
//! and shares it with every request through an `Rc`.

use super::host::{self, log};
use super::http::HttpFilter;
use super::jwks::{self, JwksFetcher};
use super::shared::SharedStore;
use super::waiting::{self, Waitable};
use crate::endpoints::control::CONTROL_ROOT_ID;
use crate::gateway::Gateway;
use crate::integrity;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

#[derive(Default)]
pub struct Root {
    gateway: Option<Rc<Gateway>>,
    /// OAuth: fetches the key set (driven by on_tick).
    jwks: JwksFetcher,
    /// This instance serves the operator endpoints (control listener) only.
    control: bool,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(o) = self.gateway.as_ref().and_then(|g| g.auth().oauth()) {
            if self.jwks.on_response(o, token, body_size) {
                waiting::wake(o.has_keys());
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration() else {
            log(
                LogLevel::Error,
                "mcpx: the plugin configuration is empty; pass the policy part of mcpx.yaml as `configuration`",
            );
            return false;
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(_) => {
                log(LogLevel::Error, "mcpx: the plugin configuration is not UTF-8 text");
                return false;
            }
        };
        crate::ablation::configure(text);
        self.control = host::property(&["plugin_root_id"]).is_some_and(|id| id == CONTROL_ROOT_ID.as_bytes());
        // Create the baseline keys now (Envoy's main thread configures first),
        // so every later update is a guarded compare-and-swap.
        if let Err(e) = integrity::ensure_initialized(&mut SharedStore) {
            log(LogLevel::Error, &format!("mcpx: cannot initialise the integrity baseline: {e}"));
        }
        match Gateway::from_plugin_config(text) {
            Ok(g) => {
                if g.auth().oauth().is_some() && !self.control {
                    // Keys are fetched and shared from the tick, in every VM.
                    if host::set_tick_period(jwks::TICK).is_err() {
                        log(LogLevel::Error, "mcpx: cannot set a tick period; OAuth keys will not load");
                    }
                }
                self.jwks = JwksFetcher::default();
                if let Some(o) = g.auth().oauth() {
                    self.jwks.adopt_shared(o);
                }
                if let Some(pins) = &g.config().inspection.pins {
                    // A reloaded lock that accepts a change admits it at once.
                    if let Err(e) = integrity::reconcile_lock(&mut SharedStore, pins) {
                        log(LogLevel::Error, &format!("mcpx: cannot apply the lock to the recorded violations: {e}"));
                    }
                }
                super::metrics::define_static();
                self.gateway = Some(Rc::new(g));
                true
            }
            Err(e) => {
                // Refusing the config makes Envoy keep the previous one (or
                // not start): fail closed, with the reason in the log.
                log(LogLevel::Error, &format!("mcpx: invalid configuration: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(o) = self.gateway.as_ref().and_then(|g| g.auth().oauth()) {
            self.jwks.on_tick(o);
            waiting::wake(o.has_keys());
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Waitable::new(context_id, HttpFilter::new(self.gateway.clone(), self.control))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
