//! The proxy-wasm layer: one root context holding the parsed configuration,
//! one thin HTTP context per request. Host calls go through `hostcalls` with
//! every error handled: a panic here would kill the VM for the worker.

mod health;
mod host;
mod http;
mod known_tools;
mod metrics;
mod root;
mod shared;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}
