//! The tools each backend has advertised, learned from `tools/list` answers
//! the filter inspects and kept in Envoy shared data so every worker VM (and
//! a reloaded VM) labels and rate-limits the same tools the same way.
//!
//! The backend is the source, never the client, and at most
//! `ops::MAX_LEARNED_TOOLS` names are kept per server: a client cannot mint
//! metric series or rate-limit buckets by inventing tool names.

use super::{Host, Level};
use crate::integrity::StoreError;
use crate::ops::{sanitize, MAX_LEARNED_TOOLS};

fn key(server: &str) -> String {
    format!("mcpx.known_tools.{server}")
}

fn names(data: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(data).unwrap_or("").split('\n').filter(|s| !s.is_empty())
}

/// Whether `server` has advertised `tool` (compared in sanitised form).
pub fn is_known<H: Host>(host: &mut H, server: &str, tool: &str) -> bool {
    let wanted = sanitize(tool);
    match host.get(&key(server)) {
        Ok(Some((data, _))) => names(&data).any(|n| n == wanted),
        _ => false,
    }
}

/// Adds the names from a `tools/list` answer (compare-and-swap, retried).
pub fn learn<H: Host>(host: &mut H, server: &str, listed: &[String]) {
    if listed.is_empty() {
        return;
    }
    for _ in 0..4 {
        let (data, cas) = match host.get(&key(server)) {
            Ok(Some((d, cas))) => (d, cas),
            Ok(None) => (Vec::new(), None),
            Err(_) => return,
        };
        let mut all: Vec<String> = names(&data).map(String::from).collect();
        let before = all.len();
        for n in listed.iter().map(|n| sanitize(n)) {
            if all.len() >= MAX_LEARNED_TOOLS {
                break;
            }
            if !all.contains(&n) {
                all.push(n);
            }
        }
        if all.len() == before {
            return;
        }
        match host.set(&key(server), all.join("\n").as_bytes(), cas) {
            Ok(()) => return,
            Err(StoreError::CasMismatch) => continue,
            Err(_) => break,
        }
    }
    host.log(Level::Warn, &format!("mcpx: could not record the tools of server {server}"));
}
