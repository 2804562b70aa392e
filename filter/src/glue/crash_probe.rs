//! Test-only: a request carrying `x-mcpx-test-crash` panics the VM, so the
//! end-to-end tests can prove what a VM crash does (Envoy's `FAIL_RELOAD`
//! answers 503, then starts a new VM; the integrity baseline in shared data
//! survives it). Compiled only with the `crash-probe` feature, which the
//! shipped filter never has (`make e2e` builds a separate copy, and a test
//! checks the shipped `.wasm` lacks this header name).

use super::host;
use proxy_wasm::types::MapType;

pub const HEADER: &str = "x-mcpx-test-crash";

#[allow(clippy::panic)]
pub fn crash_if_asked() {
    if let Ok(Some(_)) = host::header_bytes(MapType::HttpRequestHeaders, HEADER) {
        panic!("mcpx crash probe: {HEADER} asked this VM to crash");
    }
}
