//! Schema-aware `Mcp-Param-{Name}` checks (docs/policy.md "Header rules").
//!
//! In protocol 2026-07-28 a tool may mark input properties with
//! `"x-mcp-header": "<Name>"`; clients then mirror each such argument of a
//! `tools/call` into an `Mcp-Param-<Name>` header so routers can act on it
//! without reading the body. A router acting on a header the body does not
//! back is exactly what a split-brain attack needs, so the gateway keeps each
//! tool's map (property path -> header name) from the definition it passed
//! to clients in `tools/list`, and on every 2026-07-28 `tools/call` checks
//! the headers against the body through that map:
//!
//! * a declared argument with a value needs its header, and the header's
//!   value (after strict `=?base64?…?=` decoding) must be that value:
//!   strings exactly, booleans as `true`/`false`, integers numerically
//!   (`42` = `42.0`, never `042`, `+42` or `4.2e1`);
//! * a header whose argument is absent or `null` is refused;
//! * an `Mcp-Param-*` header the tool does not declare is refused: nothing in
//!   the body vouches for it, and conforming clients never send one (a client
//!   with a stale map is told -32020 and re-lists, as the protocol says);
//! * a tool whose annotations are invalid (empty, not an HTTP token,
//!   duplicate ignoring case, on a non-primitive property, or not reachable
//!   through `properties` alone) is removed from `tools/list`, as the
//!   protocol tells clients to, and 2026-07-28 calls to it are refused.
//!
//! Storage: one small shared-data value per (server, tool) so the call path
//! reads one short key; at most [`MAX_MAPS_PER_SERVER`] per server, counted in
//! a per-server key, so a hostile backend cannot grow shared data without
//! bound. A tool with no recorded map (never listed through this gateway, or
//! past the cap) falls back to matching each header to the top-level argument
//! of the same name (see [`check`]).

use crate::integrity::{BaselineStore, StoreError, MAX_PINS_PER_SERVER};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Prefix of the per-tool keys.
pub const KEY_PREFIX: &str = "mcpx.param_headers.v1.";

/// At most this many tool maps are kept per server (as many as pins).
pub const MAX_MAPS_PER_SERVER: usize = MAX_PINS_PER_SERVER;

/// Tool names longer than this are keyed by their SHA-256.
const MAX_KEY_NAME: usize = 128;

/// The schema keyword that declares a header.
pub const ANNOTATION: &str = "x-mcp-header";

/// One declared header: the argument's property path and the header name
/// (the part after `Mcp-Param-`), as the tool spelt it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub path: Vec<String>,
    pub token: String,
}

/// What the gateway knows of one tool's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolHeaders {
    /// The declared headers (possibly none).
    Map(Vec<Declared>),
    /// The annotations are invalid (why): the tool was withheld from lists.
    Invalid(String),
}

// ---------------------------------------------------------------------------
// Reading a tool's schema
// ---------------------------------------------------------------------------

/// Keywords whose value is one subschema: crossing them leaves the
/// `properties` chain, so an annotation below is not statically reachable.
const SUBSCHEMA_ONE: [&str; 11] = [
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
/// Keywords whose value is an array of subschemas.
const SUBSCHEMA_LIST: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value is an object of subschemas.
const SUBSCHEMA_MAP: [&str; 4] = ["patternProperties", "dependentSchemas", "$defs", "definitions"];

/// Deeper schemas than this are refused rather than walked (a list is
/// already bounded by the body size; this bounds the work per tool).
const MAX_DEPTH: usize = 64;

/// The header map of a tool's `inputSchema`, or why its annotations are
/// invalid. Every schema position is visited (`$ref` is not followed, and
/// instance data such as `default`/`enum`/`const` is not a schema), so an
/// annotation hidden under `items`, a composition or a conditional is found
/// and makes the tool invalid, as the protocol requires.
pub fn scan(input_schema: Option<&Value>) -> Result<Vec<Declared>, String> {
    let mut found: Vec<Declared> = Vec::new();
    // (path, or None once off the pure `properties` chain; schema; depth)
    let mut stack: Vec<(Option<Vec<String>>, &Value, usize)> = Vec::new();
    if let Some(root) = input_schema {
        stack.push((Some(Vec::new()), root, 0));
    }
    while let Some((path, node, depth)) = stack.pop() {
        let Value::Object(schema) = node else { continue };
        if depth > MAX_DEPTH {
            return Err(format!("the input schema is nested deeper than {MAX_DEPTH} levels"));
        }
        if let Some(annotation) = schema.get(ANNOTATION) {
            found.push(declared(path.as_deref(), annotation, schema, &found)?);
        }
        for (kw, val) in schema {
            let here = kw.as_str();
            if here == "properties" {
                if let Value::Object(props) = val {
                    for (name, sub) in props {
                        let next = path.as_ref().map(|p| {
                            let mut p = p.clone();
                            p.push(name.clone());
                            p
                        });
                        stack.push((next, sub, depth + 1));
                    }
                }
            } else if SUBSCHEMA_ONE.contains(&here) {
                stack.push((None, val, depth + 1));
            } else if SUBSCHEMA_LIST.contains(&here) {
                if let Value::Array(items) = val {
                    stack.extend(items.iter().map(|s| (None, s, depth + 1)));
                }
            } else if SUBSCHEMA_MAP.contains(&here) {
                if let Value::Object(items) = val {
                    stack.extend(items.values().map(|s| (None, s, depth + 1)));
                }
            }
        }
    }
    // A stable order (the walk order depends on the stack).
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// One annotation, validated against the ones found so far.
fn declared(
    path: Option<&[String]>,
    annotation: &Value,
    schema: &Map<String, Value>,
    found: &[Declared],
) -> Result<Declared, String> {
    let path = match path {
        Some(p) if !p.is_empty() => p,
        _ => return Err(format!("{ANNOTATION} is on a schema not reachable from the root through `properties` alone")),
    };
    let at = path.join(".");
    let Value::String(token) = annotation else {
        return Err(format!("property {at:?}: {ANNOTATION} is not a string"));
    };
    if token.is_empty() {
        return Err(format!("property {at:?}: {ANNOTATION} is empty"));
    }
    if !token.bytes().all(is_tchar) {
        return Err(format!("property {at:?}: {ANNOTATION} {token:?} is not an HTTP header token"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string" | "integer" | "boolean") => {}
        other => {
            return Err(format!(
                "property {at:?}: {ANNOTATION} is allowed only on string, integer or boolean properties (type is {})",
                other.map_or_else(|| "not a single type".to_string(), |t| format!("{t:?}"))
            ))
        }
    }
    if let Some(twin) = found.iter().find(|d| d.token.eq_ignore_ascii_case(token)) {
        return Err(format!(
            "property {at:?}: {ANNOTATION} {token:?} duplicates the one on {:?} (header names ignore case)",
            twin.path.join(".")
        ));
    }
    Ok(Declared { path: path.to_vec(), token: token.clone() })
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

/// The key of one tool's map. Server names are `[a-z0-9_-]+`, so `/` separates.
pub fn key(server: &str, tool: &str) -> String {
    if tool.len() <= MAX_KEY_NAME {
        return format!("{KEY_PREFIX}{server}/{tool}");
    }
    let hex = crate::integrity::to_hex(&Sha256::digest(tool.as_bytes()));
    format!("{KEY_PREFIX}{server}/#{hex}")
}

fn count_key(server: &str) -> String {
    format!("{KEY_PREFIX}count.{server}")
}

/// The stored form: `[[token, path…], …]` for a map, a JSON string (the
/// reason) for invalid annotations. A tool with two headers is ~40 bytes.
pub fn encode(h: &ToolHeaders) -> Vec<u8> {
    let v = match h {
        ToolHeaders::Map(decl) => Value::Array(
            decl.iter()
                .map(|d| {
                    let mut row = vec![Value::String(d.token.clone())];
                    row.extend(d.path.iter().cloned().map(Value::String));
                    Value::Array(row)
                })
                .collect(),
        ),
        ToolHeaders::Invalid(why) => Value::String(why.clone()),
    };
    v.to_string().into_bytes()
}

pub fn decode(bytes: &[u8]) -> Option<ToolHeaders> {
    match serde_json::from_slice::<Value>(bytes).ok()? {
        Value::String(why) => Some(ToolHeaders::Invalid(why)),
        Value::Array(rows) => {
            let mut decl = Vec::with_capacity(rows.len());
            for row in rows {
                let Value::Array(parts) = row else { return None };
                let mut parts = parts.into_iter().map(|p| match p {
                    Value::String(s) => Some(s),
                    _ => None,
                });
                let token = parts.next()??;
                let path: Option<Vec<String>> = parts.collect();
                let path = path.filter(|p| !p.is_empty())?;
                decl.push(Declared { path, token });
            }
            Some(ToolHeaders::Map(decl))
        }
        _ => None,
    }
}

/// Records what a passed (or withheld) tool declares. Returns whether it is
/// recorded: `false` past the per-server cap (that tool then gets the
/// same-name fallback). Unchanged values are not rewritten.
pub fn record(store: &mut dyn BaselineStore, server: &str, tool: &str, h: &ToolHeaders) -> Result<bool, StoreError> {
    let k = key(server, tool);
    let value = encode(h);
    match store.get(&k)? {
        Some((old, _)) if old == value => return Ok(true),
        Some((old, _)) if !old.is_empty() => {}
        _ => {
            if !reserve(store, server)? {
                return Ok(false);
            }
        }
    }
    store.set(&k, &value, None)?;
    Ok(true)
}

/// The key of the digest of the maps `server`'s last list recorded (server
/// names have no `.`, so it meets no tool's key or the count).
fn list_key(server: &str) -> String {
    format!("{KEY_PREFIX}list.{server}")
}

/// Records the maps of every tool one list passed ([`record`] for each), in
/// one read when nothing changed: the digest of the (name, map) sequence
/// last recorded for `server` is kept, and a list with the same digest has
/// nothing to write. The per-tool keys stay what the call path reads.
///
/// The digest vouches for the per-tool keys only while no other worker is
/// writing them: it is cleared before any of them is written and set again,
/// by compare-and-swap, only if nobody touched it meanwhile; a writer that
/// loses the race clears it, so the next list writes again.
pub fn record_list(
    store: &mut dyn BaselineStore,
    server: &str,
    tools: &[(&str, ToolHeaders)],
) -> Result<(), StoreError> {
    // Every part length-prefixed, so two different sequences never feed the same bytes.
    let mut digest = Sha256::new();
    let mut part = |bytes: &[u8]| {
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    };
    for (name, h) in tools {
        part(name.as_bytes());
        match h {
            ToolHeaders::Map(decl) => {
                part(b"map");
                part(&(decl.len() as u64).to_le_bytes());
                for d in decl {
                    part(d.token.as_bytes());
                    part(&(d.path.len() as u64).to_le_bytes());
                    d.path.iter().for_each(|p| part(p.as_bytes()));
                }
            }
            ToolHeaders::Invalid(why) => {
                part(b"invalid");
                part(why.as_bytes());
            }
        }
    }
    let digest = digest.finalize();
    let k = list_key(server);
    if store.get(&k)?.is_some_and(|(v, _)| v == digest.as_slice()) {
        return Ok(());
    }
    store.set(&k, b"", None)?;
    let cas = store.get(&k)?.and_then(|(_, cas)| cas);
    let mut first_error = None;
    for (name, h) in tools {
        if let Err(e) = record(store, server, name, h) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    match store.set(&k, &digest, cas) {
        Err(StoreError::CasMismatch) => store.set(&k, b"", None),
        other => other,
    }
}

/// Counts one more tool map for `server`, unless the cap is reached. Two
/// workers recording the same new tool at once may both count it: the count
/// can only run ahead of the keys, which makes the cap conservative.
fn reserve(store: &mut dyn BaselineStore, server: &str) -> Result<bool, StoreError> {
    let k = count_key(server);
    for _ in 0..32 {
        let (n, cas) = match store.get(&k)? {
            None => (0usize, None),
            Some((v, cas)) => (std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(0), cas),
        };
        if n >= MAX_MAPS_PER_SERVER {
            return Ok(false);
        }
        match store.set(&k, (n + 1).to_string().as_bytes(), cas) {
            Ok(()) => return Ok(true),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contention)
}

/// The recorded map of one tool; `None` when none is recorded.
pub fn lookup(store: &dyn BaselineStore, server: &str, tool: &str) -> Result<Option<ToolHeaders>, StoreError> {
    let k = key(server, tool);
    match store.get(&k)? {
        Some((v, _)) if !v.is_empty() => {
            decode(&v).map(Some).ok_or_else(|| StoreError::Corrupt(format!("{k}: not a header map")))
        }
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------
// The call check
// ---------------------------------------------------------------------------

/// Checks a 2026-07-28 `tools/call`'s `Mcp-Param-*` headers (`sent`: token as
/// sent, raw value) against its `arguments` through the tool's map `known`.
/// With no map (`None`), each header must name one top-level argument of the
/// same name (ASCII case ignored) and agree with it: the check the gateway
/// can make without the schema; a missing header cannot be noticed then.
/// Repeated headers are refused before this is called.
pub fn check(
    known: Option<&ToolHeaders>,
    args: Option<&Map<String, Value>>,
    sent: &[(String, String)],
) -> Result<(), String> {
    let decl = match known {
        None => return sent.iter().try_for_each(|(token, raw)| check_same_name(token, raw, args)),
        Some(ToolHeaders::Invalid(why)) => {
            return Err(format!(
                "the tool's {ANNOTATION} annotations are invalid ({why}), so it was withheld from tools/list and its \
                 Mcp-Param headers cannot be checked"
            ))
        }
        Some(ToolHeaders::Map(decl)) => decl,
    };
    if let Some((token, _)) = sent.iter().find(|(t, _)| !decl.iter().any(|d| d.token.eq_ignore_ascii_case(t))) {
        return Err(format!(
            "Mcp-Param-{token} header is not declared by the tool (no {ANNOTATION} names it); call tools/list to \
             refresh the tool's definition"
        ));
    }
    for d in decl {
        let header = format!("Mcp-Param-{}", d.token);
        let at = d.path.join(".");
        let raw = sent.iter().find(|(t, _)| t.eq_ignore_ascii_case(&d.token)).map(|(_, v)| v.as_str());
        let value = value_at(args, &d.path).filter(|v| !v.is_null());
        match (value, raw) {
            (None, None) => {}
            (None, Some(_)) => return Err(format!("{header} header is present but the argument {at:?} is absent")),
            // Objects and arrays have no header form: a client omits the header.
            (Some(Value::Object(_) | Value::Array(_)), None) => {}
            (Some(_), None) => {
                return Err(format!("{header} header is missing but the argument {at:?} is present in the body"))
            }
            (Some(v), Some(raw)) => {
                if !agrees(v, raw)? {
                    return Err(format!("{header} header does not match the body's argument {at:?}"));
                }
            }
        }
    }
    Ok(())
}

/// The argument at a `properties` path; `None` when a step is missing or
/// not an object.
fn value_at<'a>(args: Option<&'a Map<String, Value>>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = args?.get(first)?;
    for step in rest {
        v = v.as_object()?.get(step)?;
    }
    Some(v)
}

/// Whether a header value says what the body says. `Err` for a value that
/// is not a valid header value at all.
fn agrees(body: &Value, raw: &str) -> Result<bool, String> {
    // Visible ASCII, space and tab only; anything else must be base64-wrapped.
    if !raw.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b)) {
        return Err("an Mcp-Param header value carries characters a header value may not".into());
    }
    let Some(text) = crate::headers::headervalue::decode_value(raw) else {
        return Err("an Mcp-Param header carries a malformed =?base64?...?= value".into());
    };
    Ok(match body {
        Value::String(s) => *s == text,
        Value::Bool(b) => text == if *b { "true" } else { "false" },
        Value::Number(n) => match (integral(n), header_integer(&text)) {
            (Some(a), Some(b)) => a == b,
            // Not integers: the rendering clients use (shortest round-trip form).
            _ => text == n.to_string(),
        },
        _ => false,
    })
}

/// 2^53 - 1: the largest integer every client can carry exactly.
const MAX_SAFE: i128 = 9_007_199_254_740_991;

/// A JSON number's integer value, when it has one that clients read exactly.
fn integral(n: &serde_json::Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    // `as` is exact here: integral and within the safe range.
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_SAFE as f64).then_some(f as i128)
}

/// An integer written as a header: `-?(0|[1-9][0-9]*)` with an optional
/// all-zero fraction (`42`, `-7`, `42.0`). No sign `+`, leading zeros or
/// exponents: a router comparing strings would read them as other values.
fn header_integer(s: &str) -> Option<i128> {
    let whole = match s.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.bytes().all(|b| b == b'0') => w,
        Some(_) => return None,
        None => s,
    };
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    let canonical = !digits.is_empty()
        && digits.len() <= 20
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    whole.parse::<i128>().ok()
}

/// The fallback without a map: the header names one top-level argument.
fn check_same_name(token: &str, raw: &str, args: Option<&Map<String, Value>>) -> Result<(), String> {
    let header = format!("Mcp-Param-{token}");
    let mut found = args.into_iter().flatten().filter(|(k, _)| k.eq_ignore_ascii_case(token));
    let (Some((arg, value)), None) = (found.next(), found.next()) else {
        return Err(format!(
            "{header} header names no single argument of this tools/call (the tool was not listed through this \
             gateway, so its header map is unknown and the header must name an argument of the same name)"
        ));
    };
    let scalar = matches!(value, Value::String(_) | Value::Bool(_) | Value::Number(_));
    if scalar && agrees(value, raw)? {
        Ok(())
    } else {
        Err(format!("{header} header does not match the body's argument {arg:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::MemoryStore;
    use serde_json::json;

    fn d(token: &str, path: &[&str]) -> Declared {
        Declared { path: path.iter().map(|s| s.to_string()).collect(), token: token.into() }
    }

    #[test]
    fn scan_finds_valid_maps() {
        let cases: &[(Value, Vec<Declared>)] = &[
            (json!(null), vec![]),
            (json!({"type": "object"}), vec![]),
            (
                json!({"type":"object","properties":{
                    "region":{"type":"string","x-mcp-header":"Region"},
                    "n":{"type":"integer","x-mcp-header":"N"},
                    "dry":{"type":"boolean","x-mcp-header":"Dry-Run"},
                    "cfg":{"type":"object","properties":{"tenant":{"type":"string","x-mcp-header":"Tenant"}}},
                    "plain":{"type":"string","default":{"x-mcp-header":"data, not a schema"}}}}),
                vec![d("Tenant", &["cfg", "tenant"]), d("Dry-Run", &["dry"]), d("N", &["n"]), d("Region", &["region"])],
            ),
            (
                json!({"properties":{"a":{"type":"string","x-mcp-header":"!#$%&'*+-.^_`|~09azAZ"}}}),
                vec![d("!#$%&'*+-.^_`|~09azAZ", &["a"])],
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(scan(Some(schema)).as_ref(), Ok(want), "{schema}");
        }
        assert_eq!(scan(None), Ok(vec![]));
    }

    #[test]
    fn scan_refuses_invalid_annotations() {
        let prop = |p: Value| json!({"type":"object","properties":{"a": p}});
        let cases: &[(&str, Value)] = &[
            ("empty", prop(json!({"type":"string","x-mcp-header":""}))),
            ("not a token (space)", prop(json!({"type":"string","x-mcp-header":"Re gion"}))),
            ("not a token (colon)", prop(json!({"type":"string","x-mcp-header":"a:b"}))),
            ("not a token (CRLF)", prop(json!({"type":"string","x-mcp-header":"a\r\nX-Evil: 1"}))),
            ("not a token (non-ASCII)", prop(json!({"type":"string","x-mcp-header":"Régión"}))),
            ("not a string", prop(json!({"type":"string","x-mcp-header":7}))),
            ("number", prop(json!({"type":"number","x-mcp-header":"N"}))),
            ("object", prop(json!({"type":"object","x-mcp-header":"O"}))),
            ("array", prop(json!({"type":"array","x-mcp-header":"A"}))),
            ("no type", prop(json!({"x-mcp-header":"A"}))),
            ("type list", prop(json!({"type":["string","null"],"x-mcp-header":"A"}))),
            ("root", json!({"type":"string","x-mcp-header":"Root"})),
            ("under items", prop(json!({"type":"array","items":{"type":"string","x-mcp-header":"I"}}))),
            ("under anyOf", prop(json!({"anyOf":[{"type":"string","x-mcp-header":"I"}]}))),
            ("under then", prop(json!({"if":{},"then":{"type":"string","x-mcp-header":"I"}}))),
            ("under $defs", json!({"$defs":{"x":{"type":"string","x-mcp-header":"I"}},"properties":{}})),
            ("under additionalProperties", json!({"additionalProperties":{"type":"string","x-mcp-header":"I"}})),
            (
                "under properties of items",
                prop(json!({"type":"array","items":{"properties":{"b":{"type":"string","x-mcp-header":"I"}}}})),
            ),
            (
                "duplicate ignoring case",
                json!({"properties":{"a":{"type":"string","x-mcp-header":"Region"},"b":{"type":"string","x-mcp-header":"REGION"}}}),
            ),
        ];
        for (why, schema) in cases {
            assert!(scan(Some(schema)).is_err(), "{why}: {schema}");
        }
        let mut deep = json!({"type":"string","x-mcp-header":"D"});
        for _ in 0..100 {
            deep = json!({"type":"object","properties":{"x": deep}});
        }
        assert!(scan(Some(&deep)).is_err(), "too deep");
    }

    fn sent(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter().map(|(t, v)| (t.to_string(), v.to_string())).collect()
    }

    #[test]
    fn check_with_a_map() {
        let map = ToolHeaders::Map(vec![
            d("Region", &["region"]),
            d("N", &["n"]),
            d("Dry", &["dry"]),
            d("Tenant", &["cfg", "tenant"]),
        ]);
        let args = json!({"region":"eu","n":42,"dry":false,"cfg":{"tenant":"acme"},"other":"x"});
        let all = [("Region", "eu"), ("N", "42"), ("Dry", "false"), ("Tenant", "acme")];
        let ok = |h: &[(&str, &str)], a: &Value| check(Some(&map), a.as_object(), &sent(h));
        assert_eq!(ok(&all, &args), Ok(()));
        // Header names ignore case; integers compare numerically; base64.
        assert_eq!(
            ok(&[("region", "=?base64?ZXU=?="), ("n", "42.0"), ("DRY", "false"), ("tenant", "acme")], &args),
            Ok(())
        );
        let n_float = json!({"n": 42.0});
        assert_eq!(ok(&[("N", "42")], &n_float), Ok(()));
        // Absent or null arguments need no header.
        assert_eq!(ok(&[], &json!({})), Ok(()));
        assert_eq!(ok(&[], &json!({"region": null, "cfg": "not an object"})), Ok(()));
        assert_eq!(ok(&[], &json!({"region": {"an": "object"}})), Ok(()));
        let unicode = json!({"region": "Hello, 世界"});
        assert_eq!(ok(&[("Region", "=?base64?SGVsbG8sIOS4lueVjA==?=")], &unicode), Ok(()));
        let sentinel = json!({"region": "=?base64?literal?="});
        assert_eq!(ok(&[("Region", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=")], &sentinel), Ok(()));

        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value);
        let refused: &[Case] = &[
            ("different value", &[("Region", "us"), ("N", "42"), ("Dry", "false"), ("Tenant", "acme")], args.clone()),
            ("missing header", &[("N", "42"), ("Dry", "false"), ("Tenant", "acme")], args.clone()),
            ("missing nested header", &[("Region", "eu"), ("N", "42"), ("Dry", "false")], args.clone()),
            ("header without value", &[("Region", "eu")], json!({})),
            ("header with null value", &[("Region", "eu")], json!({"region": null})),
            ("header for an object value", &[("Region", "{}")], json!({"region": {}})),
            ("undeclared header", &[("Other", "x")], json!({"other": "x"})),
            ("integer with leading zero", &[("N", "042")], json!({"n": 42})),
            ("integer with plus", &[("N", "+42")], json!({"n": 42})),
            ("integer exponent", &[("N", "4.2e1")], json!({"n": 42})),
            ("integer fraction", &[("N", "42.5")], json!({"n": 42})),
            ("number as other number", &[("N", "43")], json!({"n": 42})),
            ("bool case", &[("Dry", "False")], json!({"dry": false})),
            ("bool as 0", &[("Dry", "0")], json!({"dry": false})),
            ("string vs bool", &[("Dry", "false")], json!({"dry": "no"})),
            ("malformed base64", &[("Region", "=?base64?ZXU?=")], json!({"region": "eu"})),
            ("non-canonical base64", &[("Region", "=?base64?ZXV=?=")], json!({"region": "eu"})),
            ("base64 of other", &[("Region", "=?base64?dXM=?=")], json!({"region": "eu"})),
            ("sentinel read literally", &[("Region", "=?base64?ZXU=?=")], json!({"region": "=?base64?ZXU=?="})),
            ("upper-case markers are literal", &[("Region", "=?BASE64?ZXU=?=")], json!({"region": "eu"})),
            ("control character", &[("Region", "e\u{1}u")], json!({"region": "e\u{1}u"})),
            ("non-ASCII unencoded", &[("Region", "é")], json!({"region": "é"})),
        ];
        for (why, h, a) in refused {
            assert!(ok(h, a).is_err(), "{why}");
        }
        let invalid = ToolHeaders::Invalid("bad".into());
        assert!(check(Some(&invalid), args.as_object(), &[]).is_err());
    }

    #[test]
    fn check_without_a_map_matches_same_name_arguments() {
        let args = json!({"text":"hi","Region":"eu","n":5,"flag":true,"obj":{}});
        let none = |h: &[(&str, &str)]| check(None, args.as_object(), &sent(h));
        assert_eq!(none(&[("region", "eu"), ("N", "5"), ("flag", "true"), ("Text", "=?base64?aGk=?=")]), Ok(()));
        assert_eq!(none(&[]), Ok(()), "a missing header cannot be noticed without the map");
        for h in [[("region", "us")], [("missing", "x")], [("obj", "{}")], [("flag", "1")]] {
            assert!(none(&h).is_err(), "{h:?}");
        }
    }

    #[test]
    fn integers() {
        for (s, want) in [("0", Some(0)), ("-7", Some(-7)), ("42.0", Some(42)), ("42.000", Some(42)), ("-0", Some(0))] {
            assert_eq!(header_integer(s), want, "{s}");
        }
        for s in ["", "-", "01", "+1", "1e3", "1.", ".0", "1.5", "0x10", " 1", "123456789012345678901"] {
            assert_eq!(header_integer(s), None, "{s}");
        }
        let big: Value = serde_json::from_str("9007199254740993.0").unwrap();
        assert_eq!(integral(big.as_number().unwrap()), None, "beyond the safe range a float is not exact");
    }

    #[test]
    fn storage_round_trip_cap_and_size() {
        let map = ToolHeaders::Map(vec![d("Region", &["region"]), d("Tenant", &["cfg", "tenant"])]);
        let bytes = encode(&map);
        assert_eq!(bytes, br#"[["Region","region"],["Tenant","cfg","tenant"]]"#);
        assert_eq!(decode(&bytes), Some(map.clone()));
        assert_eq!(decode(&encode(&ToolHeaders::Map(vec![]))), Some(ToolHeaders::Map(vec![])));
        assert_eq!(decode(b"\"why\""), Some(ToolHeaders::Invalid("why".into())));
        for bad in [&b"7"[..], b"[[]]", b"[[\"T\"]]", b"[[\"T\",1]]", b"{"] {
            assert_eq!(decode(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let mut store = MemoryStore::default();
        assert_eq!(lookup(&store, "s", "t"), Ok(None));
        assert_eq!(record(&mut store, "s", "t", &map), Ok(true));
        assert_eq!(lookup(&store, "s", "t"), Ok(Some(map.clone())));
        let long = "x".repeat(500);
        assert_eq!(record(&mut store, "s", &long, &map), Ok(true));
        assert!(key("s", &long).len() < 120);
        assert_eq!(lookup(&store, "s", &long), Ok(Some(map.clone())));
        // Re-recording the same or a changed map does not count again.
        record(&mut store, "s", "t", &ToolHeaders::Map(vec![])).unwrap();
        let count = store.get(&count_key("s")).unwrap().unwrap().0;
        assert_eq!(count, b"2");
        store.set(&count_key("s"), MAX_MAPS_PER_SERVER.to_string().as_bytes(), None).unwrap();
        assert_eq!(record(&mut store, "s", "new", &map), Ok(false), "past the cap");
        assert_eq!(lookup(&store, "s", "new"), Ok(None));
        store.set(&key("s", "junk"), b"{}", None).unwrap();
        assert!(lookup(&store, "s", "junk").is_err(), "a corrupt value is an error, not 'unknown'");
    }

    /// Counts the reads a store serves.
    /// Counts the reads a store serves; with `.2`, the other worker's write
    /// queued in `interfere` lands just before the next digest write.
    struct Counting(MemoryStore, std::cell::Cell<usize>, bool);
    impl BaselineStore for Counting {
        fn get(&self, key: &str) -> Result<Option<crate::integrity::Stored>, StoreError> {
            self.1.set(self.1.get() + 1);
            self.0.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            let held = std::mem::take(&mut self.0.interfere);
            if self.2 && key.contains(".list.") && !value.is_empty() {
                self.2 = false;
                self.0.interfere = held;
                return self.0.set(key, value, cas);
            }
            let r = self.0.set(key, value, cas);
            self.0.interfere = held;
            r
        }
    }

    #[test]
    fn a_list_records_in_one_read_when_nothing_changed() {
        let region = ToolHeaders::Map(vec![d("Region", &["region"])]);
        let first = [("a", region.clone()), ("b", ToolHeaders::Map(vec![]))];
        let second = [("a", ToolHeaders::Invalid("why".into())), ("b", region.clone())];
        let mut store = Counting(MemoryStore::default(), Default::default(), false);
        let reads = |store: &mut Counting, list: &[(&str, ToolHeaders)]| {
            store.1.set(0);
            record_list(store, "s", list).unwrap();
            store.1.get()
        };
        assert!(reads(&mut store, &first) > 1);
        assert_eq!(reads(&mut store, &first), 1, "unchanged: the digest alone");
        assert_eq!(lookup(&store, "s", "a"), Ok(Some(region.clone())));
        // A changed list is written, and so is the first one again (no stale skip).
        assert!(reads(&mut store, &second) > 1);
        assert_eq!(lookup(&store, "s", "b"), Ok(Some(region.clone())));
        assert!(reads(&mut store, &first) > 1);
        assert_eq!(lookup(&store, "s", "a"), Ok(Some(region.clone())));
        assert_eq!(lookup(&store, "s", "b"), Ok(Some(ToolHeaders::Map(vec![]))));
        // Another worker recording meanwhile (it writes the digest key just before our
        // compare-and-swap): ours is not stored, and the next list writes again.
        record_list(&mut store, "s", &second).unwrap();
        store.0.interfere = vec![(list_key("s"), b"other".to_vec())];
        store.2 = true;
        record_list(&mut store, "s", &first).unwrap();
        assert!(reads(&mut store, &first) > 1, "a digest set by a racing writer is not trusted");
        assert_eq!(reads(&mut store, &first), 1);
    }
}
