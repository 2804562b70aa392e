//! The integrity baseline in proxy-wasm shared data: one store per `vm_id`
//! for every worker thread, kept across config reloads and VM restarts
//! (ENVOY-FACTS §4), lost when Envoy itself restarts.

use crate::integrity::{BaselineStore, StoreError, Stored};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

pub struct SharedStore;

impl BaselineStore for SharedStore {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((None, None)) => Ok(None),
            Ok((value, cas)) => Ok(Some((value.unwrap_or_default(), cas))),
            Err(s) => Err(StoreError::Host(format!("{s:?}"))),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(s) => Err(StoreError::Host(format!("{s:?}"))),
        }
    }
}
