//! The root context: parses the plugin configuration once per (re)configure
//! and shares it with every request through an `Rc`.

use super::host::log;
use super::http::HttpFilter;
use super::jwks::{self, JwksFetcher};
use super::waiting::{self, Waitable};
use crate::gateway::Gateway;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

#[derive(Default)]
pub struct Root {
    gateway: Option<Rc<Gateway>>,
    /// OAuth: fetches the key set (driven by on_tick).
    jwks: JwksFetcher,
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
        let Some(bytes) = self.get_plugin_configuration() else {
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
        match Gateway::from_plugin_config(text) {
            Ok(g) => {
                if g.auth().oauth().is_some() {
                    // Keys are fetched and shared from the tick, in every VM.
                    if proxy_wasm::hostcalls::set_tick_period(jwks::TICK).is_err() {
                        log(LogLevel::Error, "mcpx: cannot set a tick period; OAuth keys will not load");
                    }
                }
                self.jwks = JwksFetcher::default();
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
        Some(Box::new(Waitable::new(context_id, HttpFilter::new(self.gateway.clone()))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
