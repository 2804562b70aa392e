//! The root context: parses the plugin configuration once per (re)configure
//! and shares it with every request through an `Rc`.

use super::host::log;
use super::http::HttpFilter;
use super::shared::SharedStore;
use crate::control::CONTROL_ROOT_ID;
use crate::gateway::Gateway;
use crate::integrity;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

#[derive(Default)]
pub struct Root {
    gateway: Option<Rc<Gateway>>,
    /// This instance serves the operator endpoints (control listener) only.
    control: bool,
}

impl Context for Root {}

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
        self.control =
            matches!(hostcalls::get_property(vec!["plugin_root_id"]), Ok(Some(id)) if id == CONTROL_ROOT_ID.as_bytes());
        // Create the baseline keys now (Envoy's main thread configures first),
        // so every later update is a guarded compare-and-swap.
        if let Err(e) = integrity::ensure_initialized(&mut SharedStore) {
            log(LogLevel::Error, &format!("mcpx: cannot initialise the integrity baseline: {e}"));
        }
        match Gateway::from_plugin_config(text) {
            Ok(g) => {
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

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HttpFilter::new(self.gateway.clone(), self.control)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
