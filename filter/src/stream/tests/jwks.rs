//! The OAuth key-set fetcher (`stream::jwks`), natively: several VMs, each
//! with its own gateway, fetcher and fake host, over one shared store (as
//! Envoy's VMs share one `vm_id`'s shared data). Only one VM fetches per
//! floor interval; the others adopt what it published.

use super::*;
use crate::auth::b64;
use crate::auth::oauth::{OAuth, REFETCH_FLOOR_SECS, REFRESH_SECS};
use crate::integrity::{BaselineStore, MemoryStore};
use crate::stream::fake::FakeHost;
use crate::stream::jwks::{self, JwksFetcher};
use crate::stream::Level;
use jwt_simple::prelude::*;
use serde_json::json;

const URI_A: &str = "https://auth.example.com/jwks.json";
const URI_B: &str = "http://other.example.com:8080/keys";

fn config(jwks_uri: &str) -> String {
    format!(
        "servers:\n  - name: demo\nauth:\n  enabled: true\n  type: oauth\n  oauth:\n    resource: https://gw.example.com/mcp\n    jwks_uri: {jwks_uri}\n    issuer: https://auth.example.com\n"
    )
}

/// A JWKS with the test keys named `kids` (a, b).
fn keyset(kids: &[&str]) -> Vec<u8> {
    let pems = [include_str!("../../../tests/data/test-rsa-a.pem"), include_str!("../../../tests/data/test-rsa-b.pem")];
    let keys: Vec<Value> = kids
        .iter()
        .zip(pems)
        .map(|(kid, pem)| {
            let c = RS256KeyPair::from_pem(pem).unwrap().public_key().to_components();
            json!({ "kty": "RSA", "kid": kid, "alg": "RS256", "n": b64::encode(&c.n), "e": b64::encode(&c.e) })
        })
        .collect();
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

/// One VM: its own configuration (and so its own keys), fetcher and host.
struct Vm {
    gateway: Rc<Gateway>,
    fetcher: JwksFetcher,
    host: FakeHost,
}

impl Vm {
    fn oauth(&self) -> &OAuth {
        self.gateway.auth().oauth().unwrap()
    }
    fn has_keys(&self) -> bool {
        self.oauth().has_keys()
    }
    fn warned(&self, fragment: &str) -> bool {
        self.host.logs.iter().any(|(l, m)| *l == Level::Warn && m.contains(fragment))
    }
}

/// Envoy: the VMs, their one shared store and the clock.
struct World {
    shared: MemoryStore,
    vms: Vec<Vm>,
    now_ms: u64,
}

impl World {
    fn new(n: usize, jwks_uri: &str) -> Self {
        let mut w = World { shared: MemoryStore::default(), vms: Vec::new(), now_ms: 1_000_000_000 };
        for _ in 0..n {
            w.configure(jwks_uri);
        }
        w
    }

    /// A VM (re)configured: a new gateway and fetcher that adopt what is shared.
    fn configure(&mut self, jwks_uri: &str) -> usize {
        let vm = Vm { gateway: gateway(&config(jwks_uri)), fetcher: JwksFetcher::default(), host: FakeHost::default() };
        self.vms.push(vm);
        let i = self.vms.len() - 1;
        self.with(i, |vm| {
            let g = vm.gateway.clone();
            vm.fetcher.adopt_shared(&mut vm.host, g.auth().oauth().unwrap())
        });
        i
    }

    /// Runs `f` on VM `i` with the shared store and the clock in its host.
    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Vm) -> R) -> R {
        let vm = &mut self.vms[i];
        std::mem::swap(&mut vm.host.shared, &mut self.shared);
        vm.host.now_ms = self.now_ms;
        let r = f(vm);
        std::mem::swap(&mut vm.host.shared, &mut self.shared);
        r
    }

    fn tick(&mut self, i: usize) {
        self.with(i, |vm| {
            let g = vm.gateway.clone();
            vm.fetcher.on_tick(&mut vm.host, g.auth().oauth().unwrap())
        })
    }

    /// The answer to call `token` arrives at VM `i`; true when it was its own.
    fn answer(&mut self, i: usize, token: u32, status: Option<&str>, body: &[u8]) -> bool {
        self.with(i, |vm| {
            let headers = status.map(|s| vec![(":status".to_string(), s.to_string())]).unwrap_or_default();
            vm.host.call_response = (headers, body.to_vec());
            let g = vm.gateway.clone();
            vm.fetcher.on_response(&mut vm.host, g.auth().oauth().unwrap(), token, body.len())
        })
    }

    /// VM `i` fetches: exactly one new call, answered 200 with `body`.
    fn fetch(&mut self, i: usize, body: &[u8]) {
        let before = self.vms[i].host.calls.len();
        self.tick(i);
        assert_eq!(self.vms[i].host.calls.len(), before + 1, "VM {i} should have fetched");
        let token = self.vms[i].host.calls[before].token;
        assert!(self.answer(i, token, Some("200"), body));
    }

    fn calls(&self, i: usize) -> usize {
        self.vms[i].host.calls.len()
    }

    fn last_token(&self, i: usize) -> u32 {
        self.vms[i].host.calls.last().unwrap().token
    }

    fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.get(key).unwrap().map(|(v, _)| v)
    }

    fn record(&self, i: usize) -> Option<Vec<u8>> {
        self.shared_value(&jwks::data_key(self.vms[i].oauth()))
    }

    fn advance_secs(&mut self, s: u64) {
        self.now_ms += s * 1000;
    }
}

#[test]
fn two_vms_one_fetch_the_other_adopts_without_fetching() {
    let mut w = World::new(2, URI_A);
    w.tick(0);
    w.tick(1);
    assert_eq!((w.calls(0), w.calls(1)), (1, 0), "one lease, one fetch");
    let call = &w.vms[0].host.calls[0];
    assert_eq!(call.cluster, "mcpx_jwks");
    let header = |n: &str| call.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(
        (header(":method"), header(":path"), header(":authority"), header("accept")),
        (Some("GET"), Some("/jwks.json"), Some("auth.example.com"), Some("application/json"))
    );
    assert!(!w.vms[1].has_keys());

    let body = keyset(&["key-a"]);
    let token = w.last_token(0);
    assert!(w.answer(0, token, Some("200"), &body));
    assert!(w.vms[0].has_keys());
    let mut published = format!("{}\n", w.now_ms / 1000).into_bytes();
    published.extend_from_slice(&body);
    assert_eq!(w.record(0), Some(published), "the record is `<secs>\\n<body>`");

    // The other VM adopts it on its next tick, without a fetch of its own.
    w.tick(1);
    assert!(w.vms[1].has_keys());
    assert_eq!((w.calls(0), w.calls(1)), (1, 0));
    // A VM configured later adopts it at once.
    let late = w.configure(URI_A);
    assert!(w.vms[late].has_keys());
    w.tick(late);
    assert_eq!(w.calls(late), 0);
}

/// A token signed with key b (`kid: key-b`), valid at `now`.
fn token_b(now: u64) -> String {
    let key = RS256KeyPair::from_pem(include_str!("../../../tests/data/test-rsa-b.pem")).unwrap().with_key_id("key-b");
    let claims = json!({
        "iss": "https://auth.example.com", "sub": "alice", "aud": "https://gw.example.com/mcp/demo",
        "iat": now - 10, "exp": now + 3600
    });
    let c: JWTClaims<serde_json::Map<String, Value>> = serde_json::from_value(claims).unwrap();
    key.sign(c).unwrap()
}

#[test]
fn an_unknown_kid_refetches_after_the_floor_and_reinstalls_nothing() {
    let mut w = World::new(1, URI_A);
    w.fetch(0, &keyset(&["key-a"]));
    // A token names key-b: this VM wants a fetch (long before the refresh).
    let now = w.now_ms / 1000;
    let headers: Vec<(String, String)> = [(":path", "/mcp/demo"), (":authority", "gw.example.com")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("authorization".to_string(), format!("Bearer {}", token_b(now)))])
        .collect();
    let check = w.vms[0].oauth().check(&crate::request::RequestHead { headers: &headers }, Some("demo"), now);
    assert!(!matches!(check, crate::auth::Check::Allowed(_)), "key-b is unknown yet");
    w.advance_secs(REFETCH_FLOOR_SECS);
    // Its own published document is not adopted again (that would forget the wish).
    w.tick(0);
    assert_eq!(w.calls(0), 2, "the unknown kid fetches after the floor");
}

#[test]
fn an_unchanged_shared_document_is_adopted_once() {
    let mut w = World::new(0, URI_A);
    w.shared.set(&format!("mcpx.jwks.doc:{URI_A}"), b"1000\n{\"keys\":[]}", None).unwrap();
    let vm = w.configure(URI_A);
    for _ in 0..3 {
        w.tick(vm);
    }
    let warnings = w.vms[vm].host.logs.iter().filter(|(_, m)| m.contains("the shared JWKS could not be used")).count();
    assert_eq!(warnings, 1, "one version, read once");
}

#[test]
fn a_failed_or_invalid_answer_keeps_the_previous_keys() {
    // (status, body) -> the answer was installed and published; the log.
    type Row<'a> = (Option<&'a str>, &'a [u8], bool, Level, &'a str);
    let rows: &[Row] = &[
        (Some("200"), &keyset(&["key-a", "key-b"]), true, Level::Info, "loaded 2 signing key(s)"),
        (
            Some("500"),
            &keyset(&["key-a", "key-b"]),
            false,
            Level::Warn,
            "failed with HTTP 500; keeping the previous keys",
        ),
        (Some("404"), b"not found", false, Level::Warn, "failed with HTTP 404"),
        (None, &keyset(&["key-a", "key-b"]), false, Level::Warn, "failed with HTTP ?"),
        (Some("200"), b"not json", false, Level::Warn, "rejected"),
        (Some("200"), b"{\"keys\":[]}", false, Level::Warn, "rejected"),
    ];
    for (status, body, installed, level, log) in rows {
        let mut w = World::new(1, URI_A);
        w.fetch(0, &keyset(&["key-a"]));
        let first = w.record(0);
        w.advance_secs(REFRESH_SECS);
        w.tick(0);
        assert_eq!(w.calls(0), 2, "{status:?}: the refresh is due");
        let token = w.last_token(0);
        assert!(w.answer(0, token, *status, body), "{status:?}: our own answer");
        assert!(w.vms[0].has_keys(), "{status:?}: keys kept");
        let (l, m) = w.vms[0].host.logs.last().unwrap();
        assert!(l == level && m.contains(log), "{status:?}: logged {l:?} {m:?}");
        if *installed {
            assert_ne!(w.record(0), first, "{status:?}: published");
        } else {
            assert_eq!(w.record(0), first, "{status:?}: the previous document stays published");
            // Still wanted: the next fetch comes after the floor, not the refresh interval.
            w.advance_secs(REFETCH_FLOOR_SECS);
            w.tick(0);
            assert_eq!(w.calls(0), 3, "{status:?}: retried after the floor");
        }
    }
}

#[test]
fn an_answer_to_another_token_is_not_ours() {
    let mut w = World::new(2, URI_A);
    w.tick(0);
    let token = w.last_token(0);
    let body = keyset(&["key-a"]);
    assert!(!w.answer(1, token, Some("200"), &body), "VM 1 has no fetch in flight");
    assert!(!w.answer(0, token + 1, Some("200"), &body), "a probe's token");
    assert!(!w.vms[0].has_keys() && !w.vms[1].has_keys(), "nothing installed from someone else's answer");
    assert_eq!(w.record(0), None);
    assert!(w.answer(0, token, Some("200"), &body));
    assert!(!w.answer(0, token, Some("200"), &body), "answered once; no longer in flight");
}

#[test]
fn the_lease_allows_one_fetch_per_floor_interval() {
    // (VM, seconds passed since the first fetch) -> it fetches. The first
    // fetch failed (500), so every VM still wants keys.
    let rows: &[(usize, u64, bool)] = &[
        (0, 0, false), // its own lease (and nothing in flight any more)
        (1, 0, false), // another VM: the shared lease
        (1, REFETCH_FLOOR_SECS - 1, false),
        (1, REFETCH_FLOOR_SECS, true),
        (0, REFETCH_FLOOR_SECS, false), // VM 1 took the lease just now
        (0, 2 * REFETCH_FLOOR_SECS, true),
    ];
    let mut w = World::new(2, URI_A);
    w.tick(0);
    let token = w.last_token(0);
    assert!(w.answer(0, token, Some("500"), b""));
    assert!(w.vms[0].warned("failed with HTTP 500"));
    let start = w.now_ms;
    for (vm, secs, fetches) in rows {
        w.now_ms = start + secs * 1000;
        let before = w.calls(*vm);
        w.tick(*vm);
        assert_eq!(w.calls(*vm) > before, *fetches, "VM {vm} at +{secs}s");
        if *fetches {
            let token = w.last_token(*vm);
            assert!(w.answer(*vm, token, Some("500"), b""));
        }
    }
}

#[test]
fn keys_are_refreshed_only_when_due() {
    // Seconds since a successful fetch -> VM 0 fetches again.
    let rows: &[(u64, bool)] = &[(REFETCH_FLOOR_SECS, false), (REFRESH_SECS - 1, false), (REFRESH_SECS, true)];
    for (secs, fetches) in rows {
        let mut w = World::new(1, URI_A);
        w.fetch(0, &keyset(&["key-a"]));
        w.advance_secs(*secs);
        w.tick(0);
        assert_eq!(w.calls(0) == 2, *fetches, "+{secs}s");
    }
}

#[test]
fn a_lease_another_vm_took_between_read_and_write_is_lost() {
    // Another VM writes the lease between this VM's read and its
    // compare-and-swap -> this VM fetches.
    for (interfere, fetches) in [(true, false), (false, true)] {
        let mut w = World::new(2, URI_A);
        w.tick(0);
        let token = w.last_token(0);
        assert!(w.answer(0, token, Some("500"), b""));
        w.advance_secs(REFETCH_FLOOR_SECS);
        let now = (w.now_ms / 1000).to_string().into_bytes();
        if interfere {
            w.shared.interfere.push((format!("mcpx.jwks.lease:{URI_A}"), now));
        }
        w.tick(1);
        assert_eq!(w.calls(1) == 1, fetches, "interfered: {interfere}");
    }
}

#[test]
fn a_fetch_in_flight_blocks_another_after_the_floor() {
    let mut w = World::new(1, URI_A);
    w.tick(0);
    w.advance_secs(REFETCH_FLOOR_SECS * 3);
    w.tick(0);
    assert_eq!(w.calls(0), 1, "one fetch in flight at a time");
}

#[test]
fn a_reload_to_another_jwks_uri_uses_other_keys() {
    let mut w = World::new(1, URI_A);
    w.fetch(0, &keyset(&["key-a"]));
    // Reloaded to another URI: nothing shared for it yet, and its lease is its own.
    let b = w.configure(URI_B);
    assert!(!w.vms[b].has_keys(), "A's document is not B's");
    w.tick(b);
    assert_eq!(w.calls(b), 1, "fetches inside A's floor interval: another lease");
    let call = &w.vms[b].host.calls[0];
    let header = |n: &str| call.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!((header(":path"), header(":authority")), (Some("/keys".into()), Some("other.example.com:8080".into())));
    let token = w.last_token(b);
    assert!(w.answer(b, token, Some("200"), &keyset(&["key-b"])));
    assert_ne!(w.record(0), w.record(b), "each URI has its own record");
    // Back to A: A's document, adopted at once.
    let a = w.configure(URI_A);
    assert!(w.vms[a].has_keys());
    assert_eq!(w.record(a), w.record(0));
}

#[test]
fn a_corrupt_shared_record_is_ignored() {
    // What another writer left under the document key -> a warning.
    let valid = keyset(&["key-a"]);
    let with = |head: &[u8]| [head, &valid[..]].concat();
    let rows: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"".to_vec(), None),
        (valid.clone(), None), // no `<secs>\n`
        (with(b"soon\n"), None),
        (with(b"-1\n"), None),
        (with(b"\n"), None),
        (b"1000\nnot json".to_vec(), Some("the shared JWKS could not be used")),
        (b"1000\n{\"keys\":[]}".to_vec(), Some("the shared JWKS could not be used")),
    ];
    for (record, warning) in &rows {
        let mut w = World::new(0, URI_A);
        let key = format!("mcpx.jwks.doc:{URI_A}");
        w.shared.set(&key, record, None).unwrap();
        let vm = w.configure(URI_A);
        w.tick(vm);
        let shown = String::from_utf8_lossy(&record[..record.len().min(16)]);
        assert!(!w.vms[vm].has_keys(), "{shown:?}: not installed");
        assert_eq!(warning.is_some_and(|m| w.vms[vm].warned(m)), warning.is_some(), "{shown:?}");
        assert_eq!(w.calls(vm), 1, "{shown:?}: fetches its own");
        let token = w.last_token(vm);
        assert!(w.answer(vm, token, Some("200"), &keyset(&["key-a"])));
        assert!(w.vms[vm].has_keys(), "{shown:?}: the fetched keys replace it");
        assert!(w.record(vm).unwrap().ends_with(&keyset(&["key-a"])), "{shown:?}: republished");
    }
}

#[test]
fn a_corrupt_lease_does_not_block_fetching() {
    for lease in [&b"garbage"[..], b"", b"-5"] {
        let mut w = World::new(0, URI_A);
        w.shared.set(&format!("mcpx.jwks.lease:{URI_A}"), lease, None).unwrap();
        let vm = w.configure(URI_A);
        w.tick(vm);
        assert_eq!(w.calls(vm), 1, "{lease:?}");
        assert_eq!(
            w.shared_value(&format!("mcpx.jwks.lease:{URI_A}")),
            Some((w.now_ms / 1000).to_string().into_bytes())
        );
    }
}

#[test]
fn a_slow_fetch_does_not_replace_a_newer_one_that_finished_first() {
    // VM 0 starts a fetch that answers late (the old key set, read before a
    // rotation); after the floor VM 1 fetches the new set and publishes it.
    let mut w = World::new(2, URI_A);
    w.tick(0);
    assert_eq!(w.calls(0), 1);
    let slow = w.last_token(0);
    w.advance_secs(REFETCH_FLOOR_SECS + 1);
    let new_set = keyset(&["key-b"]);
    w.fetch(1, &new_set);
    let published = w.record(1);
    assert!(published.as_deref().is_some_and(|r| r.ends_with(&new_set)));
    // The slow answer arrives: it must not replace the newer set, here or for the others.
    assert!(w.answer(0, slow, Some("200"), &keyset(&["key-a"])));
    assert_eq!(w.record(0), published, "the newer record stays published");
    assert!(w.vms[0].has_keys(), "the VM adopted the newer set instead");
    assert!(w.vms[0].host.logs.iter().any(|(l, m)| *l == Level::Info && m.contains("newer JWKS")));
    assert!(!w.vms[0].host.logs.iter().any(|(_, m)| m.contains("loaded")), "the old set was never installed");
}
