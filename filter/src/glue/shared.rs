//! The integrity baseline in proxy-wasm shared data: one store per `vm_id`
//! for every worker thread, kept across config reloads and VM restarts
//! (ENVOY-FACTS §4), lost when Envoy itself restarts.

use super::host::{self, log};
use crate::integrity::{BaselineStore, StoreError, Stored, Violation};
use proxy_wasm::types::LogLevel;

pub struct SharedStore;

impl BaselineStore for SharedStore {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        match host::shared_data(key) {
            Ok((None, None)) => Ok(None),
            Ok((value, cas)) => Ok(Some((value.unwrap_or_default(), cas))),
            Err(s) => Err(StoreError::Host(s.to_string())),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match host::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(host::CAS_MISMATCH) => Err(StoreError::CasMismatch),
            Err(s) => Err(StoreError::Host(s.to_string())),
        }
    }
}

/// Stat names are dot-separated: keep label values to a safe alphabet.
fn stat_label(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// `mcpx_integrity_violations_total{server,tool,kind}` (as Envoy stat
/// `wasmcustom.mcpx_integrity_violations_total.server.S.tool.T.kind.K`).
fn count(server: &str, v: &Violation) {
    super::metrics::integrity_violation(&stat_label(server), &stat_label(&v.tool), v.kind.as_str());
}

/// Audits violations: a warn log line each and the counter. `action` says
/// what the gateway did with the tool.
pub fn report(server: &str, violations: &[Violation], action: &str) {
    for v in violations {
        let short = |h: &Option<String>| h.as_deref().map_or("-".to_string(), |h| h.chars().take(16).collect());
        log(
            LogLevel::Warn,
            &format!(
                "mcpx: integrity violation kind={} server={} tool={:?} pinned={} seen={} other_server={} action={}",
                v.kind.as_str(),
                server,
                v.tool,
                short(&v.pinned),
                short(&v.seen),
                v.other_server.as_deref().unwrap_or("-"),
                action
            ),
        );
        count(server, v);
    }
}
