//! The integrity baseline in proxy-wasm shared data: one store per `vm_id`
//! for every worker thread, kept across config reloads and VM restarts
//! (Envoy keeps shared data across LDS/ECDS updates and `FAIL_RELOAD` VM
//! restarts), lost when Envoy itself restarts.

use super::host;
use crate::integrity::{BaselineStore, StoreError, Stored};

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
