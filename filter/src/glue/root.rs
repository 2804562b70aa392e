//! The root context: hands the plugin configuration to the core once per
//! (re)configure (`stream::configure`), shares the gateway with every
//! request through an `Rc`, and hands ticks and call answers to the key-set
//! fetcher (`stream::jwks`).

use super::host::{self, log, WasmHost};
use super::http::HttpFilter;
use super::waiting::{self, Waitable};
use crate::endpoints::control::CONTROL_ROOT_ID;
use crate::gateway::Gateway;
use crate::stream::configure;
use crate::stream::jwks::{self, JwksFetcher};
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
            if self.jwks.on_response(&mut WasmHost, o, token, body_size) {
                waiting::wake(o.has_keys());
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = host::plugin_configuration();
        self.control = host::property(&["plugin_root_id"]).is_some_and(|id| id == CONTROL_ROOT_ID.as_bytes());
        let Some(g) = configure::configure(&mut WasmHost, bytes.as_deref()) else { return false };
        if configure::needs_tick(&g, self.control) && host::set_tick_period(jwks::TICK).is_err() {
            log(LogLevel::Error, "mcpx: cannot set a tick period; OAuth keys will not load");
        }
        self.jwks = JwksFetcher::default();
        if let Some(o) = g.auth().oauth() {
            self.jwks.adopt_shared(&mut WasmHost, o);
        }
        super::metrics::define_static();
        self.gateway = Some(Rc::new(g));
        true
    }

    fn on_tick(&mut self) {
        if let Some(o) = self.gateway.as_ref().and_then(|g| g.auth().oauth()) {
            self.jwks.on_tick(&mut WasmHost, o);
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
