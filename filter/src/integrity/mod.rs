//! Tool integrity pinning (docs/integrity.md): the first definition a server advertises
//! for a tool becomes its baseline; a later, different definition is a rug
//! pull, and a tool name already pinned on another server is shadowing.
//!
//! Host-independent: the baseline lives behind [`BaselineStore`], which the
//! glue implements with proxy-wasm shared data (one store for every worker
//! thread, kept across config reloads) and the tests implement in memory.
//!
//! Storage layout (two keys, so the per-call check reads only a small value):
//! * [`BASELINE_KEY`]: every pin, `{"next":N,"servers":{S:{tool:{"sha256":…,"seq":n}}}}`.
//!   `seq` orders first sightings across servers, which decides who owns a
//!   tool name for shadowing. Updated by compare-and-swap, so concurrent
//!   workers agree on one baseline and the first writer wins.
//! * [`VIOLATIONS_KEY`]: the (server, tool) pairs found in violation,
//!   `{S:{tool:{"kind":…,…}}}`. Sticky until an operator resets them; in
//!   `enforce` mode a `tools/call` to a listed tool is refused.
//! * One small mark per recorded violation (`mcpx.integrity.v1.mark.S/tool`,
//!   value the kind), so the per-call check is one lookup of one short value
//!   however many violations exist, never a parse of the whole record.
//!
//! Layout: `canonical.rs` — the RFC 8785 text and the SHA-256 pin;
//! `store.rs` — the store and its compare-and-swap updates; this file —
//! pins, violations, verdicts, the lock, resets.
//!
//! A hostile backend cannot grow any of this without bound: at most
//! [`MAX_PINS_PER_SERVER`] pins and [`MAX_VIOLATIONS_PER_SERVER`] violations
//! are kept per server. A tool past the pin cap is not pinned and counts as a
//! violation of kind `overflow`; past the violation cap the server itself is
//! marked `overflow`, and in `enforce` every call to it is refused until an
//! operator resets it (fail closed; `warn` only reports).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

mod canonical;
mod store;

pub use canonical::{canonical_json, to_hex, tool_hash, write_es_number};
pub(crate) use canonical::{hex_sha256, utf16_cmp, write_string};
pub use store::{ensure_initialized, BaselineStore, MemoryStore, StoreError, Stored};
use store::{load, set_mark, update, update_baseline};

pub use crate::config::LockPins;

pub const BASELINE_KEY: &str = "mcpx.integrity.baseline.v1";
pub const VIOLATIONS_KEY: &str = "mcpx.integrity.violations.v1";

/// Prefix of the per-violation marks (see the module comment).
pub const MARK_PREFIX: &str = "mcpx.integrity.v1.mark.";

/// At most this many tools are pinned per server.
pub const MAX_PINS_PER_SERVER: usize = 10_000;

/// At most this many violations are recorded per server; past it the whole
/// server is marked (tool name [`WHOLE_SERVER`], kind `overflow`).
pub const MAX_VIOLATIONS_PER_SERVER: usize = 1024;

/// The record's tool name for "the whole server" (violation cap reached).
pub const WHOLE_SERVER: &str = "*";

/// Tool names longer than this are marked by their SHA-256, so no key is long.
const MAX_MARK_NAME: usize = 128;

/// The mark of one (server, tool) violation, or with `None` the whole-server
/// mark. Server names are `[a-z0-9_-]+`, so `/` separates unambiguously.
pub fn mark_key(server: &str, tool: Option<&str>) -> String {
    match tool {
        None => format!("{MARK_PREFIX}{server}"),
        Some(t) if t.len() <= MAX_MARK_NAME => format!("{MARK_PREFIX}{server}/{t}"),
        Some(t) => format!("{MARK_PREFIX}{server}/#{}", hex_sha256(t.as_bytes())),
    }
}

/// How often a compare-and-swap update is retried before giving up.
const CAS_RETRIES: usize = 32;

// ---------------------------------------------------------------------------
// Baseline, violations and verdicts
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The next first-sighting sequence number.
    pub next: u64,
    /// server -> tool name -> pin.
    pub servers: BTreeMap<String, BTreeMap<String, Pin>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub sha256: String,
    /// Order of first sighting across all servers.
    pub seq: u64,
}

impl Baseline {
    /// The server that pinned `tool` first, if any.
    fn owner(&self, tool: &str) -> Option<(&str, u64)> {
        self.servers
            .iter()
            .filter_map(|(s, tools)| tools.get(tool).map(|p| (s.as_str(), p.seq)))
            .min_by_key(|(_, seq)| *seq)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The tool's definition differs from its pinned baseline.
    RugPull,
    /// The tool name was pinned first on another server.
    Shadowing,
    /// Not a tool object with a string `name`: it cannot be pinned.
    Malformed,
    /// Past a cap: more tools than are pinned, or (tool `*`) more violations
    /// than are recorded for the server.
    Overflow,
    /// The server is in the reviewed lock, but this tool is not (new, or
    /// renamed since the lock was reviewed).
    Unpinned,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RugPull => "rug_pull",
            Kind::Shadowing => "shadowing",
            Kind::Malformed => "malformed",
            Kind::Overflow => "overflow",
            Kind::Unpinned => "unpinned",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::RugPull, Kind::Shadowing, Kind::Malformed, Kind::Overflow, Kind::Unpinned]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// Why a call is refused, for the refusal message.
    pub fn explain(self) -> &'static str {
        match self {
            Kind::RugPull => "its definition changed after it was pinned (possible rug pull)",
            Kind::Shadowing => "another server advertised a tool of the same name first (possible shadowing)",
            Kind::Malformed => "its definition is malformed",
            Kind::Overflow => {
                "the server advertised more tools, or more changed tools, than tool integrity keeps per server \
                 (it cannot be pinned)"
            }
            Kind::Unpinned => "it is not in the reviewed lock (mcpx.lock): new, or renamed since the lock was reviewed",
        }
    }
}

/// One tool found in violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: Kind,
    /// The tool name (for malformed tools: its position, `#i`).
    pub tool: String,
    /// The pinned hash (rug pull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// The hash just seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
    /// The server that owns the name (shadowing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_server: Option<String>,
}

/// server -> tool -> the violation recorded for it.
pub type Violations = BTreeMap<String, BTreeMap<String, Violation>>;

/// What pinning found for one advertised tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Matches its baseline.
    Trusted,
    /// Seen for the first time: now pinned.
    Pinned,
    Violation(Violation),
}

impl Verdict {
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::Violation(v) => Some(v),
            _ => None,
        }
    }
}

/// Checks the tools one `tools/list` result of `server` advertised against the
/// baseline, pinning the ones seen for the first time, and records the
/// violations. A tool with a violation recorded earlier stays in violation
/// (even if the server reverted it) until an operator resets it, so lists and
/// calls agree. Returns one verdict per tool, in order.
pub fn check_tools(store: &mut dyn BaselineStore, server: &str, tools: &[Value]) -> Result<Vec<Verdict>, StoreError> {
    check_tools_locked(store, server, tools, None)
}

/// [`check_tools`] with the reviewed lock's pins (`inspection.pins`): a
/// server in the lock is judged against it instead of first use (its
/// verdicts follow the lock, so an updated lock accepts a change at once);
/// a server not in it keeps trust on first use, and a tool name the lock
/// pins on another server is shadowing.
pub fn check_tools_locked(
    store: &mut dyn BaselineStore,
    server: &str,
    tools: &[Value],
    lock: Option<&LockPins>,
) -> Result<Vec<Verdict>, StoreError> {
    let hashed: Vec<Option<(&str, String)>> = tools
        .iter()
        .map(|t| t.get("name").and_then(Value::as_str).filter(|_| t.is_object()).map(|n| (n, tool_hash(t))))
        .collect();
    check_hashed(store, server, &hashed, lock)
}

/// [`check_tools_locked`] on tools already hashed: per tool, its name and
/// [`tool_hash`], or `None` when it is not an object with a string `name`.
pub fn check_hashed(
    store: &mut dyn BaselineStore,
    server: &str,
    hashed: &[Option<(&str, String)>],
    lock: Option<&LockPins>,
) -> Result<Vec<Verdict>, StoreError> {
    if let Some(pins) = lock.and_then(|l| l.get(server)) {
        return check_against_lock(store, server, hashed, pins);
    }
    let verdicts = update_baseline(store, |baseline: &mut Baseline| {
        let mut changed = false;
        let verdicts: Vec<Verdict> = hashed
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let Some((name, hash)) = h else {
                    return Verdict::Violation(Violation {
                        kind: Kind::Malformed,
                        tool: format!("#{i}"),
                        pinned: None,
                        seen: None,
                        other_server: None,
                    });
                };
                let (verdict, pinned_now) = judge(baseline, server, name, hash);
                changed |= pinned_now;
                verdict
            })
            .collect();
        (verdicts, changed)
    })?;
    let (recorded, _) = load::<Violations>(store, VIOLATIONS_KEY)?;
    let recorded = recorded.get(server);
    let verdicts: Vec<Verdict> = verdicts
        .into_iter()
        .zip(hashed)
        .map(|(v, h)| match (&v, h, recorded) {
            (Verdict::Trusted | Verdict::Pinned, Some((name, _)), Some(rec)) => {
                // A server past the violation cap is in violation as a whole,
                // so its lists agree with the calls refused to it.
                rec.get(*name).or_else(|| rec.get(WHOLE_SERVER)).map_or(v, |r| Verdict::Violation(r.clone()))
            }
            _ => v,
        })
        // A name the reviewed lock pins on another server is shadowing.
        .zip(hashed)
        .map(|(v, h)| match (&v, h) {
            (Verdict::Trusted | Verdict::Pinned, Some((name, hash))) => {
                locked_owner(lock, server, name).map_or(v, |other| {
                    Verdict::Violation(Violation {
                        kind: Kind::Shadowing,
                        tool: name.to_string(),
                        pinned: None,
                        seen: Some(hash.clone()),
                        other_server: Some(other.to_string()),
                    })
                })
            }
            _ => v,
        })
        .collect();
    record(store, server, &verdicts, &[])?;
    Ok(verdicts)
}

/// The locked server (other than `server`) that pins `tool`, if any.
fn locked_owner<'a>(lock: Option<&'a LockPins>, server: &str, tool: &str) -> Option<&'a str> {
    lock?.iter().find(|(s, tools)| s.as_str() != server && tools.contains_key(tool)).map(|(s, _)| s.as_str())
}

/// One locked server's list against its pins. Nothing is pinned on first
/// use; a tool matching its pin clears any violation recorded for it.
fn check_against_lock(
    store: &mut dyn BaselineStore,
    server: &str,
    hashed: &[Option<(&str, String)>],
    pins: &BTreeMap<String, String>,
) -> Result<Vec<Verdict>, StoreError> {
    let mut cleared = Vec::new();
    let verdicts: Vec<Verdict> = hashed
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let violation = |kind, tool: String, pinned: Option<&String>, seen: Option<&String>| {
                Verdict::Violation(Violation {
                    kind,
                    tool,
                    pinned: pinned.cloned(),
                    seen: seen.cloned(),
                    other_server: None,
                })
            };
            match h {
                None => violation(Kind::Malformed, format!("#{i}"), None, None),
                Some((name, hash)) => match pins.get(*name) {
                    Some(pin) if pin == hash => {
                        cleared.push(name.to_string());
                        Verdict::Trusted
                    }
                    Some(pin) => violation(Kind::RugPull, name.to_string(), Some(pin), Some(hash)),
                    None => violation(Kind::Unpinned, name.to_string(), None, Some(hash)),
                },
            }
        })
        .collect();
    record(store, server, &verdicts, &cleared)?;
    Ok(verdicts)
}

/// Records the violations among `verdicts` (and their marks), and forgets
/// those of the `cleared` tools (locked servers: the lock decides).
fn record(
    store: &mut dyn BaselineStore,
    server: &str,
    verdicts: &[Verdict],
    cleared: &[String],
) -> Result<(), StoreError> {
    let found: Vec<&Violation> =
        verdicts.iter().filter_map(Verdict::violation).filter(|v| v.kind != Kind::Malformed).collect();
    if !found.is_empty() || !cleared.is_empty() {
        let marks = update(store, VIOLATIONS_KEY, |all: &mut Violations| {
            let entry = all.entry(server.to_string()).or_default();
            let mut marks = Vec::new();
            for name in cleared {
                if entry.remove(name).is_some() {
                    marks.push((name.clone(), None));
                }
            }
            for v in &found {
                if entry.get(&v.tool) == Some(*v) {
                    continue;
                }
                if entry.len() < MAX_VIOLATIONS_PER_SERVER || entry.contains_key(&v.tool) {
                    entry.insert(v.tool.clone(), (*v).clone());
                    marks.push((v.tool.clone(), Some(v.kind)));
                } else if !entry.contains_key(WHOLE_SERVER) {
                    let whole = Violation {
                        kind: Kind::Overflow,
                        tool: WHOLE_SERVER.to_string(),
                        pinned: None,
                        seen: None,
                        other_server: None,
                    };
                    entry.insert(WHOLE_SERVER.to_string(), whole);
                    marks.push((WHOLE_SERVER.to_string(), Some(Kind::Overflow)));
                }
            }
            if entry.is_empty() {
                all.remove(server);
            }
            let changed = !marks.is_empty();
            (marks, changed)
        })?;
        for (tool, kind) in marks {
            set_mark(store, server, &tool, kind)?;
        }
    }
    Ok(())
}

/// On (re)configure with a lock: forgets the recorded violations the lock
/// now accepts (the definition seen is the one pinned), so `mcpx pin
/// --update` plus a reload admits a reviewed change before the next list.
pub fn reconcile_lock(store: &mut dyn BaselineStore, lock: &LockPins) -> Result<usize, StoreError> {
    let removed = update(store, VIOLATIONS_KEY, |all: &mut Violations| {
        let mut removed = Vec::new();
        for (server, tools) in all.iter_mut() {
            let Some(pins) = lock.get(server) else { continue };
            tools.retain(|tool, v| {
                let accepted = v.seen.is_some() && pins.get(tool) == v.seen.as_ref();
                if accepted {
                    removed.push((server.clone(), tool.clone()));
                }
                !accepted
            });
        }
        all.retain(|_, tools| !tools.is_empty());
        let changed = !removed.is_empty();
        (removed, changed)
    })?;
    for (server, tool) in &removed {
        set_mark(store, server, tool, None)?;
    }
    Ok(removed.len())
}

/// One tool against the baseline; pins it (in `baseline`) on first sight.
/// Returns the verdict and whether the baseline changed.
fn judge(baseline: &mut Baseline, server: &str, name: &str, hash: &str) -> (Verdict, bool) {
    // Read without copying (this runs once per tool of every list).
    let other = baseline.owner(name).filter(|(s, _)| *s != server).map(|(s, _)| s.to_string());
    let tools = baseline.servers.get(server);
    let pinned = tools.and_then(|tools| tools.get(name)).map(|p| p.sha256.as_str());
    let was_pinned = pinned.is_some();
    if !was_pinned && tools.is_some_and(|tools| tools.len() >= MAX_PINS_PER_SERVER) {
        let v = Violation {
            kind: Kind::Overflow,
            tool: name.to_string(),
            pinned: None,
            seen: Some(hash.to_string()),
            other_server: None,
        };
        return (Verdict::Violation(v), false);
    }
    let mut changed = false;
    if let Some(pinned) = pinned {
        if pinned != hash {
            let v = Violation {
                kind: Kind::RugPull,
                tool: name.to_string(),
                pinned: Some(pinned.to_string()),
                seen: Some(hash.to_string()),
                other_server: None,
            };
            return (Verdict::Violation(v), false);
        }
    } else {
        // First sight on this server: trust on first use. A shadowing tool is
        // pinned too, so later changes to it are also caught.
        let seq = baseline.next;
        baseline.next += 1;
        baseline
            .servers
            .entry(server.to_string())
            .or_default()
            .insert(name.to_string(), Pin { sha256: hash.to_string(), seq });
        changed = true;
    }
    match other {
        Some(other) => {
            let v = Violation {
                kind: Kind::Shadowing,
                tool: name.to_string(),
                pinned: None,
                seen: Some(hash.to_string()),
                other_server: Some(other),
            };
            (Verdict::Violation(v), changed)
        }
        None if was_pinned => (Verdict::Trusted, changed),
        None => (Verdict::Pinned, changed),
    }
}

/// The violation recorded for a tool, if any: the `tools/call` check. At
/// most two reads of short values (the tool's mark, the server's mark),
/// whatever the size of the record.
pub fn recorded_violation(store: &dyn BaselineStore, server: &str, tool: &str) -> Result<Option<Kind>, StoreError> {
    for key in [mark_key(server, Some(tool)), mark_key(server, None)] {
        match store.get(&key)? {
            Some((v, _)) if !v.is_empty() => {
                let text = String::from_utf8_lossy(&v);
                return Kind::parse(&text)
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt(format!("{key}: unknown violation kind {text:?}")));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Everything pinned and recorded, for the operator view.
pub fn snapshot(store: &dyn BaselineStore) -> Result<Value, StoreError> {
    let (baseline, _) = load::<Baseline>(store, BASELINE_KEY)?;
    let (violations, _) = load::<Violations>(store, VIOLATIONS_KEY)?;
    Ok(serde_json::json!({ "servers": baseline.servers, "violations": violations }))
}

/// What a reset removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ResetSummary {
    pub pins_removed: usize,
    pub violations_removed: usize,
}

/// Forgets pins and violations: all of them, one server's, or one tool's.
/// The next `tools/list` pins afresh (trust on first use again). Shared data
/// cannot be deleted in proxy-wasm, so this writes the smaller value.
pub fn reset(
    store: &mut dyn BaselineStore,
    server: Option<&str>,
    tool: Option<&str>,
) -> Result<ResetSummary, StoreError> {
    let matches = |s: &str, t: &str| server.is_none_or(|want| want == s) && tool.is_none_or(|want| want == t);
    let pins_removed = update(store, BASELINE_KEY, |b: &mut Baseline| {
        let n = prune(&mut b.servers, matches);
        (n, n > 0)
    })?;
    let removed = update(store, VIOLATIONS_KEY, |v: &mut Violations| {
        let mut removed = Vec::new();
        for (s, tools) in v.iter() {
            removed.extend(tools.keys().filter(|t| matches(s, t)).map(|t| (s.clone(), t.clone())));
        }
        prune(v, matches);
        let changed = !removed.is_empty();
        (removed, changed)
    })?;
    for (s, t) in &removed {
        set_mark(store, s, t, None)?;
    }
    Ok(ResetSummary { pins_removed, violations_removed: removed.len() })
}

fn prune<V>(map: &mut BTreeMap<String, BTreeMap<String, V>>, matches: impl Fn(&str, &str) -> bool) -> usize {
    let mut removed = 0;
    for (s, tools) in map.iter_mut() {
        let before = tools.len();
        tools.retain(|t, _| !matches(s, t));
        removed += before - tools.len();
    }
    map.retain(|_, tools| !tools.is_empty());
    removed
}

#[cfg(test)]
mod tests;
