//! The proxy-wasm layer: one root context holding the parsed configuration,
//! one thin HTTP context per request that translates each callback into the
//! core state machine (`crate::stream`). Host calls go through `host.rs`,
//! which returns every host error instead of panicking: a panic here would
//! kill the VM for the worker.

#[cfg(feature = "crash-probe")]
mod crash_probe;
mod host;
mod http;
mod metrics;
mod root;
mod shared;
mod waiting;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}
