//! Where pins and violations live: a key-value store with compare-and-swap
//! ([`BaselineStore`], proxy-wasm shared data in the glue, [`MemoryStore`]
//! in tests), and the guarded read-modify-write every update goes through.

use super::{mark_key, Baseline, Kind, Violations, BASELINE_KEY, CAS_RETRIES, VIOLATIONS_KEY, WHOLE_SERVER};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read (retry).
    CasMismatch,
    /// The host refused the call.
    Host(String),
    /// The stored value is not what this version writes.
    Corrupt(String),
    /// Too many concurrent writers; gave up after retrying.
    Contention,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CasMismatch => write!(f, "the baseline changed while it was being updated"),
            StoreError::Host(m) => write!(f, "shared data is unavailable: {m}"),
            StoreError::Corrupt(m) => write!(f, "the stored baseline is unreadable: {m}"),
            StoreError::Contention => write!(f, "the baseline is being updated by too many workers at once"),
        }
    }
}

/// A stored value and its version (`cas`, for compare-and-swap).
pub type Stored = (Vec<u8>, Option<u32>);

/// A key-value store with compare-and-swap, shaped like proxy-wasm shared data.
pub trait BaselineStore {
    /// The value and its version (`cas`), or `None` when the key is absent.
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError>;
    /// Writes `value`. With `cas`, fails with [`StoreError::CasMismatch`] when
    /// the key changed since that version was read. (As in Envoy, creating an
    /// absent key is not guarded by `cas`: see [`ensure_initialized`].)
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Creates both keys when absent. Called once when the plugin is configured
/// (Envoy's main thread, before workers serve requests), so every later
/// update is a guarded compare-and-swap on an existing key.
pub fn ensure_initialized(store: &mut dyn BaselineStore) -> Result<(), StoreError> {
    if store.get(BASELINE_KEY)?.is_none() {
        store.set(BASELINE_KEY, &to_bytes(&Baseline::default())?, None)?;
    }
    if store.get(VIOLATIONS_KEY)?.is_none() {
        store.set(VIOLATIONS_KEY, &to_bytes(&Violations::default())?, None)?;
    }
    // The record survives VM reloads; its marks are rebuilt from it so the
    // per-call check agrees with it whatever wrote it.
    let (all, _) = load::<Violations>(store, VIOLATIONS_KEY)?;
    for (server, tools) in &all {
        for (tool, v) in tools {
            set_mark(store, server, tool, Some(v.kind))?;
        }
    }
    Ok(())
}

pub(super) fn set_mark(
    store: &mut dyn BaselineStore,
    server: &str,
    tool: &str,
    kind: Option<Kind>,
) -> Result<(), StoreError> {
    let key = mark_key(server, (tool != WHOLE_SERVER).then_some(tool));
    store.set(&key, kind.map_or("", Kind::as_str).as_bytes(), None)
}

pub(super) fn to_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads a key as `T`; an absent or empty key is `T::default()`.
pub(super) fn load<T: Default + for<'de> Deserialize<'de>>(
    store: &dyn BaselineStore,
    key: &str,
) -> Result<(T, Option<u32>), StoreError> {
    match store.get(key)? {
        None => Ok((T::default(), None)),
        Some((bytes, cas)) if bytes.is_empty() => Ok((T::default(), cas)),
        Some((bytes, cas)) => {
            let v = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            Ok((v, cas))
        }
    }
}

/// Read-modify-write with compare-and-swap, retried on conflicts. `change`
/// returns its result and whether it modified the value.
pub(super) fn update<T, R>(
    store: &mut dyn BaselineStore,
    key: &str,
    mut change: impl FnMut(&mut T) -> (R, bool),
) -> Result<R, StoreError>
where
    T: Default + Serialize + for<'de> Deserialize<'de>,
{
    for _ in 0..CAS_RETRIES {
        let (mut value, cas) = load::<T>(store, key)?;
        let (result, changed) = change(&mut value);
        if !changed {
            return Ok(result);
        }
        match store.set(key, &to_bytes(&value)?, cas) {
            Ok(()) => return Ok(result),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contention)
}

thread_local! {
    /// The baseline this VM last read or wrote, with the exact bytes it was
    /// decoded from. Every list reads the whole baseline (all servers' pins,
    /// for shadowing); decoding it again on each list was about a fifth of
    /// the inspection's cost. The decoded value is a function of the bytes
    /// alone, so it is reused only when the store returns the same bytes.
    static DECODED_BASELINE: RefCell<Option<(Vec<u8>, Baseline)>> = const { RefCell::new(None) };
}

/// [`update`] of [`BASELINE_KEY`], decoding the stored bytes only when they
/// differ from the ones this VM decoded last. `change` must leave the
/// baseline untouched when it reports no change (the kept value is reused).
pub(super) fn update_baseline<R>(
    store: &mut dyn BaselineStore,
    mut change: impl FnMut(&mut Baseline) -> (R, bool),
) -> Result<R, StoreError> {
    let keep = |bytes: Vec<u8>, value: Baseline| DECODED_BASELINE.with(|c| *c.borrow_mut() = Some((bytes, value)));
    for _ in 0..CAS_RETRIES {
        let (bytes, cas) = store.get(BASELINE_KEY)?.unwrap_or_default();
        let cached = DECODED_BASELINE.with(|c| c.borrow_mut().take()).filter(|(b, _)| *b == bytes);
        let mut value = match cached {
            Some((_, v)) => v,
            None if bytes.is_empty() => Baseline::default(),
            None => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("{BASELINE_KEY}: {e}")))?,
        };
        let (result, changed) = change(&mut value);
        if !changed {
            keep(bytes, value);
            return Ok(result);
        }
        let new = to_bytes(&value)?;
        match store.set(BASELINE_KEY, &new, cas) {
            Ok(()) => {
                keep(new, value);
                return Ok(result);
            }
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contention)
}

/// An in-memory [`BaselineStore`] with Envoy's semantics, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: BTreeMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Test hook: writes another worker makes just before our next `set`.
    pub interfere: Vec<(String, Vec<u8>)>,
}

impl BaselineStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self.data.get(key).map(|(v, c)| (v.clone(), Some(*c))))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if let Some((k, v)) = self.interfere.pop() {
            self.next_cas += 1;
            self.data.insert(k, (v, self.next_cas));
        }
        if let (Some((_, current)), Some(cas)) = (self.data.get(key), cas) {
            if *current != cas {
                return Err(StoreError::CasMismatch);
            }
        }
        self.next_cas += 1;
        self.data.insert(key.to_string(), (value.to_vec(), self.next_cas));
        Ok(())
    }
}
