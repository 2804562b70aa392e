//! What the root context does with a (new) plugin configuration: refuse
//! it with the reason in the log (Envoy then keeps the previous one, or
//! does not start: fail closed), or build the gateway, with the integrity
//! baseline's keys created and a reloaded lock applied.

use super::{Host, Level};
use crate::gateway::Gateway;
use crate::integrity;

/// The gateway for `bytes` (the policy part of mcpx.yaml), or `None` when
/// the configuration must be refused.
pub fn configure<H: Host>(host: &mut H, bytes: Option<&[u8]>) -> Option<Gateway> {
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        host.log(
            Level::Error,
            "mcpx: the plugin configuration is empty; pass the policy part of mcpx.yaml as `configuration`",
        );
        return None;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        host.log(Level::Error, "mcpx: the plugin configuration is not UTF-8 text");
        return None;
    };
    crate::ablation::configure(text);
    // Create the baseline keys now (Envoy's main thread configures first),
    // so every later update is a guarded compare-and-swap.
    if let Err(e) = integrity::ensure_initialized(host) {
        host.log(Level::Error, &format!("mcpx: cannot initialise the integrity baseline: {e}"));
    }
    let gateway = match Gateway::from_plugin_config(text) {
        Ok(g) => g,
        Err(e) => {
            host.log(Level::Error, &format!("mcpx: invalid configuration: {e}"));
            return None;
        }
    };
    if let Some(pins) = &gateway.config().inspection.pins {
        // A reloaded lock that accepts a change admits it at once.
        if let Err(e) = integrity::reconcile_lock(host, pins) {
            host.log(Level::Error, &format!("mcpx: cannot apply the lock to the recorded violations: {e}"));
        }
    }
    Some(gateway)
}

/// Whether this root must tick: OAuth keys are fetched and shared from the
/// tick, in every VM but the control listener's.
pub fn needs_tick(gateway: &Gateway, control: bool) -> bool {
    gateway.auth().oauth().is_some() && !control
}
