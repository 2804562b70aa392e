//! Rewriting the lists a client reads from a backend's answers: dropping the
//! tools (and prompts, resources, resource templates) a caller may not use
//! while keeping every other field (`nextCursor`, caching fields,
//! `resultType`) as it was.
//!
//! Every JSON-RPC response object carrying a list is rewritten, whatever its
//! `id` and whatever request it answers: clients match ids loosely (the
//! TypeScript SDK compares them as numbers, so `"1"`, `1.0` and `-0` answer
//! requests 1 and 0), so the only safe rule is that no list passes
//! uninspected. Member names are matched as the most lenient client decoder
//! matches them: Go's `encoding/json` folds case (and `ſ` to `s`, the Kelvin
//! sign to `k`), so `"Result"`/`"TOOLS"` are read as `result`/`tools`; two
//! members that fold together make the message ambiguous, and it is refused.

use crate::request::fold::fold_eq;
use crate::request::jsonrpc::{StrictValue, StrictVisitor};
use crate::tools_list::scan::{ScannedTool, Scanner};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

/// The lists a result can carry, by member name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] =
        [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates];

    /// The member name, as the MCP schema spells it.
    pub fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The field that names an entry (for audit of what was removed).
    fn name_field(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// The one member of `obj` that reads as `target` for a decoder that folds
/// case (Go's `encoding/json`); an error when several do.
fn member_key(obj: &Map<String, Value>, target: &str) -> Result<Option<String>, String> {
    let mut found = obj.keys().filter(|k| fold_eq(k, target));
    let first = found.next().cloned();
    if let Some(second) = found.next() {
        return Err(format!(
            "the answer has members {:?} and {second:?}, which clients may read as the same \"{target}\"",
            first.unwrap_or_default()
        ));
    }
    Ok(first)
}

/// What the rewrite did, for audit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListRewrite {
    /// The new body, when anything changed.
    pub body: Option<Vec<u8>>,
    pub removed: Vec<String>,
}

/// Filters the tools of every list result in a JSON-RPC body (a single
/// message or a batch). `keep` decides per tool object; other lists are kept
/// whole. With `private`, a result holding a list is marked
/// `cacheScope: private` so no shared cache serves one caller's view to
/// another.
///
/// Returns `Err` when the body is not a JSON-RPC message or batch, or is
/// ambiguous: the caller must not let an uninspectable list through.
pub fn rewrite(body: &[u8], private: bool, mut keep: impl FnMut(&Value) -> bool) -> Result<ListRewrite, String> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let mut out = ListRewrite::default();
    let changed = rewrite_value(&mut doc, private, |kind, items| {
        Ok::<_, String>(items.iter().map(|t| kind != ListKind::Tools || keep(t)).collect())
    })?;
    out.removed = changed.removed;
    if changed.changed {
        out.body = Some(serde_json::to_vec(&doc).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// What [`rewrite_value`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ValueRewrite {
    pub changed: bool,
    /// How many lists were found (inspected).
    pub lists: usize,
    pub removed: Vec<String>,
}

/// The in-place core of [`rewrite`]: `mask` sees each list array (with its
/// kind) and says which entries to keep (one bool per entry; missing entries
/// mean drop). Errors from `mask`, an ambiguous message, and a body that is
/// not a JSON-RPC object or batch are returned.
pub fn rewrite_value<E: From<String>>(
    doc: &mut Value,
    private: bool,
    mut mask: impl FnMut(ListKind, &[Value]) -> Result<Vec<bool>, E>,
) -> Result<ValueRewrite, E> {
    let mut out = ValueRewrite::default();
    let mut visit = |msg: &mut Value| -> Result<(), E> {
        let Value::Object(obj) = msg else { return Ok(()) };
        let Some(key) = member_key(obj, "result")? else { return Ok(()) };
        let Some(Value::Object(result)) = obj.get_mut(&key) else { return Ok(()) };
        let mut lists = 0;
        for kind in ListKind::ALL {
            let Some(key) = member_key(result, kind.member())? else { continue };
            let Some(Value::Array(items)) = result.get_mut(&key) else { continue };
            lists += 1;
            let keep = mask(kind, items)?;
            retain_kept(items, &keep, value_name(kind), &mut out);
        }
        out.lists += lists;
        if private && lists > 0 {
            result.insert("cacheScope".into(), Value::String("private".into()));
            out.changed = true;
        }
        Ok(())
    };
    match doc {
        Value::Array(items) => items.iter_mut().try_for_each(&mut visit)?,
        Value::Object(_) => visit(doc)?,
        _ => return Err(E::from("the answer is not a JSON-RPC object or batch".to_string())),
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// One pass: the answer with each tool's own bytes
// ---------------------------------------------------------------------------

/// An answer read for inspection in one pass: the envelope as values, and
/// every `tools` list of a result as its tools' places in the answer's text
/// with what one read of each found ([`crate::tools_list::scan`]). Member order is
/// kept, so an answer written back from it differs from the backend's only
/// where it changed.
#[derive(Debug, Clone)]
pub enum Node {
    Value(Value),
    /// A batch.
    Batch(Vec<Node>),
    /// A message, or a message's result object.
    Object(Vec<(String, Node)>),
    /// A result's `tools` array.
    Tools(Vec<Tool>),
}

/// One tool of a list: where its bytes are in the answer's text, and which
/// entry of [`Parsed::scanned`] is its read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub start: usize,
    pub end: usize,
    pub at: usize,
}

/// An answer read in one pass.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub doc: Node,
    pub scanned: Rc<Vec<Rc<ScannedTool>>>,
}

impl Parsed {
    /// What reading tool `t` found.
    pub fn scanned(&self, t: &Tool) -> Option<&ScannedTool> {
        self.scanned.get(t.at).map(|s| &**s)
    }
}

/// Reads an answer the way [`crate::request::jsonrpc::parse_strict`] does (every
/// byte checked, and refused where it refuses), with every tools list kept
/// as its tools' places in `text`; `hash` asks for each tool's canonical
/// hash. An `Err` says only "refused": the caller takes the tree path for
/// its message.
pub fn parse_lists(text: &[u8], hash: bool) -> Result<Parsed, String> {
    let duplicate = RefCell::new(None);
    let scanner = RefCell::new(Scanner::default());
    let scanned = RefCell::new(Vec::new());
    let ctx = Ctx { duplicate: &duplicate, scanner: &scanner, scanned: &scanned, base: text.as_ptr() as usize, hash };
    let mut de = serde_json::Deserializer::from_slice(text);
    let doc = Level { ctx, role: Role::Top, level: 0 }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(Parsed { doc, scanned: Rc::new(scanned.into_inner()) })
}

/// A VM keeps the reads of the last answers it inspected, one per server,
/// while their texts total at most this many bytes.
pub const READ_CACHE_BYTES: usize = 2 << 20;

/// A kept read: the answer's exact text, whether its tools were hashed, the read.
type KeptRead = (Vec<u8>, bool, Parsed);

thread_local! {
    /// server -> the read of its last answer. A
    /// read is a function of the text alone, so a backend answering the
    /// same list again (the usual case) is not read again: the text is
    /// compared byte for byte, and the cost per tool is the decision alone.
    static READS: RefCell<BTreeMap<String, KeptRead>> = const { RefCell::new(BTreeMap::new()) };
}

/// [`parse_lists`], reusing the read of the last answer from `server` when
/// this one is byte for byte the same (and was hashed if `hash`).
pub fn parse_lists_cached(server: &str, text: &[u8], hash: bool) -> Result<Parsed, String> {
    let hit = READS.with(|r| {
        r.borrow()
            .get(server)
            .filter(|(t, hashed, _)| (*hashed || !hash) && t.as_slice() == text)
            .map(|(_, _, p)| p.clone())
    });
    if let Some(p) = hit {
        return Ok(p);
    }
    let parsed = parse_lists(text, hash)?;
    if text.len() <= READ_CACHE_BYTES {
        READS.with(|r| {
            let mut r = r.borrow_mut();
            r.remove(server);
            let held: usize = r.values().map(|(t, _, _)| t.len()).sum();
            if held + text.len() > READ_CACHE_BYTES {
                r.clear();
            }
            r.insert(server.to_string(), (text.to_vec(), hash, parsed.clone()));
        });
    }
    Ok(parsed)
}

/// Keeps the entries of a list that `keep` marks (a missing mark drops),
/// recording the names (`name`) of those dropped.
fn retain_kept<T>(items: &mut Vec<T>, keep: &[bool], name: impl Fn(&T) -> Option<String>, out: &mut ValueRewrite) {
    let before = items.len();
    let mut i = 0;
    items.retain(|t| {
        let k = keep.get(i).copied().unwrap_or(false);
        i += 1;
        if !k {
            out.removed.push(name(t).unwrap_or_else(|| "<unnamed>".to_string()));
        }
        k
    });
    out.changed |= items.len() != before;
}

/// The name of a list entry that is a value (`name`, `uri`, `uriTemplate`).
fn value_name(kind: ListKind) -> impl Fn(&Value) -> Option<String> {
    move |t| t.get(kind.name_field()).and_then(Value::as_str).map(str::to_string)
}

/// One list of a [`Node`] answer, as offered to the mask.
pub enum ListRef<'x> {
    Tools(&'x [Tool]),
    Other(ListKind, &'x [Value]),
}

/// [`rewrite_value`] on a one-pass read: the same lists, offered in the
/// same order, the same entries removed and the same `cacheScope` mark.
pub fn rewrite_lists<E: From<String>>(
    parsed: &mut Parsed,
    private: bool,
    mut mask: impl FnMut(ListRef<'_>) -> Result<Vec<bool>, E>,
) -> Result<ValueRewrite, E> {
    let mut out = ValueRewrite::default();
    let scanned = Rc::clone(&parsed.scanned);
    let mut visit = |msg: &mut Node| -> Result<(), E> {
        let Node::Object(members) = msg else { return Ok(()) };
        let Some(Node::Object(result)) = members.iter_mut().find(|(k, _)| fold_eq(k, "result")).map(|(_, n)| n) else {
            return Ok(());
        };
        let mut lists = 0;
        for kind in ListKind::ALL {
            let Some(node) = result.iter_mut().find(|(k, _)| fold_eq(k, kind.member())).map(|(_, n)| n) else {
                continue;
            };
            match node {
                Node::Tools(tools) => {
                    lists += 1;
                    let keep = mask(ListRef::Tools(tools))?;
                    retain_kept(tools, &keep, |t| scanned.get(t.at).and_then(|s| s.name.clone()), &mut out);
                }
                Node::Value(Value::Array(items)) => {
                    lists += 1;
                    let keep = mask(ListRef::Other(kind, items))?;
                    retain_kept(items, &keep, value_name(kind), &mut out);
                }
                _ => {}
            }
        }
        out.lists += lists;
        if private && lists > 0 {
            let mark = Node::Value(Value::String("private".into()));
            match result.iter_mut().find(|(k, _)| k == "cacheScope") {
                Some((_, v)) => *v = mark,
                None => result.push(("cacheScope".into(), mark)),
            }
            out.changed = true;
        }
        Ok(())
    };
    match &mut parsed.doc {
        Node::Batch(items) => items.iter_mut().try_for_each(&mut visit)?,
        doc @ Node::Object(_) => visit(doc)?,
        _ => return Err(E::from("the answer is not a JSON-RPC object or batch".to_string())),
    }
    Ok(out)
}

/// The answer as JSON text: the envelope re-serialised, each kept tool's
/// own bytes (from `text`, the answer read) spliced in. Line breaks between
/// a tool's tokens become spaces (a string cannot hold a raw one), so the
/// text fits one event-stream `data:` line as the re-serialised answer did.
pub fn write(doc: &Node, text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    write_node(doc, text, &mut out)?;
    Ok(out)
}

fn write_node(node: &Node, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    match node {
        Node::Value(v) => serde_json::to_writer(&mut *out, v).map_err(|e| e.to_string())?,
        Node::Batch(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(item, text, out)?;
            }
            out.push(b']');
        }
        Node::Object(members) => {
            out.push(b'{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).map_err(|e| e.to_string())?;
                out.push(b':');
                write_node(v, text, out)?;
            }
            out.push(b'}');
        }
        Node::Tools(tools) => {
            out.push(b'[');
            for (i, t) in tools.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let raw = text.get(t.start..t.end).ok_or("a tool's place is outside the answer")?;
                let from = out.len();
                out.extend_from_slice(raw);
                if raw.iter().any(|b| *b == b'\n' || *b == b'\r') {
                    if let Some(tail) = out.get_mut(from..) {
                        tail.iter_mut().filter(|b| **b == b'\n' || **b == b'\r').for_each(|b| *b = b' ');
                    }
                }
            }
            out.push(b']');
        }
    }
    Ok(())
}

/// What every level of the one-pass read shares.
#[derive(Clone, Copy)]
struct Ctx<'c, 'de> {
    duplicate: &'c RefCell<Option<(String, String)>>,
    scanner: &'c RefCell<Scanner<'de>>,
    scanned: &'c RefCell<Vec<Rc<ScannedTool>>>,
    /// Where the text starts in memory (a tool's place is its offset from it).
    base: usize,
    hash: bool,
}

/// Where in a JSON-RPC answer a value sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Top,
    Message,
    Result,
    Tools,
}

/// How many objects and arrays serde_json lets nest (it refuses the 128th).
const PARSER_DEPTH: usize = 127;

/// A seed and visitor for one level of the envelope: objects at the
/// message and result levels keep their members as nodes (a result's
/// `tools` array as raw tools), everything else is a strict value.
#[derive(Clone, Copy)]
struct Level<'c, 'de> {
    ctx: Ctx<'c, 'de>,
    role: Role,
    /// Objects and arrays around this value.
    level: usize,
}

impl Level<'_, '_> {
    fn strict(&self) -> StrictVisitor<'_> {
        StrictVisitor { duplicate: self.ctx.duplicate }
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_, 'de> {
    type Value = Node;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_, 'de> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Value(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Value(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Value(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        self.strict().visit_f64(v).map(Node::Value)
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Value(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Value(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Value(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let level = self.level + 1;
        match self.role {
            Role::Top => {
                let mut items = Vec::new();
                while let Some(n) = seq.next_element_seed(Level { role: Role::Message, level, ..self })? {
                    items.push(n);
                }
                Ok(Node::Batch(items))
            }
            Role::Tools => {
                let max_depth = PARSER_DEPTH.saturating_sub(level + 1);
                let mut scanner = self.ctx.scanner.borrow_mut();
                let mut scanned = self.ctx.scanned.borrow_mut();
                let mut tools = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                    let raw = raw.get();
                    let start = (raw.as_ptr() as usize)
                        .checked_sub(self.ctx.base)
                        .ok_or_else(|| de::Error::custom("a tool outside the answer"))?;
                    scanned.push(scanner.read(raw, self.ctx.hash, max_depth).map_err(de::Error::custom)?);
                    tools.push(Tool { start, end: start + raw.len(), at: scanned.len() - 1 });
                }
                Ok(Node::Tools(tools))
            }
            _ => self.strict().visit_seq(seq).map(Node::Value),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let (special, next) = match self.role {
            Role::Top | Role::Message => ("result", Role::Result),
            Role::Result => (ListKind::Tools.member(), Role::Tools),
            Role::Tools => return self.strict().visit_map(map).map(Node::Value),
        };
        let level = self.level + 1;
        let mut members: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let node = if fold_eq(&key, special) {
                map.next_value_seed(Level { role: next, level, ..self })?
            } else {
                Node::Value(map.next_value_seed(StrictValue { duplicate: self.ctx.duplicate })?)
            };
            members.push((key, node));
        }
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        if crate::request::fold::duplicate(&keys).is_some() {
            return Err(de::Error::custom("duplicate key"));
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(body: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn removes_hidden_tools_and_keeps_other_fields() {
        let body = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}],"nextCursor":"c2","ttlMs":5000,"resultType":"complete"}}).to_string();
        let r = rewrite(body.as_bytes(), false, |t| t["name"] != "b").unwrap();
        let out = r.body.unwrap();
        assert_eq!(names(&out), ["a"]);
        assert_eq!(r.removed, ["b"]);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["nextCursor"], "c2");
        assert_eq!(v["result"]["ttlMs"], 5000);
        assert_eq!(v["result"]["resultType"], "complete");
        assert!(v["result"].get("cacheScope").is_none());
    }

    #[test]
    fn private_mark_and_unchanged_body() {
        let body = json!({"jsonrpc":"2.0","id":"x","result":{"tools":[{"name":"a"}]}}).to_string();
        assert_eq!(rewrite(body.as_bytes(), false, |_| true).unwrap().body, None);
        let r = rewrite(body.as_bytes(), true, |_| true).unwrap();
        let v: Value = serde_json::from_slice(&r.body.unwrap()).unwrap();
        assert_eq!(v["result"]["cacheScope"], "private");
        // A result without a list is not marked.
        let other = json!({"jsonrpc":"2.0","id":"x","result":{"content":[]}}).to_string();
        assert_eq!(rewrite(other.as_bytes(), true, |_| true).unwrap().body, None);
    }

    #[test]
    fn every_response_whatever_its_id_in_a_batch() {
        // Ids a client may match loosely: "1", 1.0, -0, null, none.
        let body = json!([
            {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}},
            {"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"b"}]}},
            {"jsonrpc":"2.0","id":1.0,"result":{"tools":[{"name":"b"}]}},
            {"jsonrpc":"2.0","id":-0.0,"result":{"tools":[{"name":"b"}]}},
            {"jsonrpc":"2.0","result":{"tools":[{"name":"b"}]}},
            7
        ])
        .to_string();
        let r = rewrite(body.as_bytes(), false, |t| t["name"] != "b").unwrap();
        assert_eq!(r.removed.len(), 5);
        let v: Value = serde_json::from_slice(&r.body.unwrap()).unwrap();
        assert_eq!(v[0]["result"]["tools"].as_array().unwrap().len(), 1);
        for i in 1..5 {
            assert!(v[i]["result"]["tools"].as_array().unwrap().is_empty(), "{i}");
        }
    }

    #[test]
    fn member_names_are_matched_as_case_folding_decoders_read_them() {
        assert!(fold_eq("Tools", "tools") && fold_eq("TOOLS", "tools") && fold_eq("tool\u{17f}", "tools"));
        assert!(fold_eq("resourcetemplates", "resourceTemplates") && !fold_eq("tool", "tools"));
        let body = r#"{"jsonrpc":"2.0","id":1,"RESULT":{"Tool\u017f":[{"name":"a"},{"name":"b"}]}}"#;
        let r = rewrite(body.as_bytes(), false, |t| t["name"] != "b").unwrap();
        assert_eq!(r.removed, ["b"]);
        // Two members that fold together: ambiguous, refused.
        let twice = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"Tools":[{"name":"b"}]}}"#;
        assert!(rewrite(twice.as_bytes(), false, |_| true).is_err());
        let twice = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"b"}]}}"#;
        assert!(rewrite(twice.as_bytes(), false, |_| true).is_err());
    }

    #[test]
    fn other_lists_are_offered_to_the_mask() {
        let body = json!({"jsonrpc":"2.0","id":1,"result":{
            "prompts":[{"name":"p"}],"resources":[{"uri":"file:///a"}],"resourceTemplates":[{"uriTemplate":"file:///x/{p}"}]}})
        .to_string();
        let mut doc: Value = serde_json::from_str(&body).unwrap();
        let mut seen = Vec::new();
        let r = rewrite_value(&mut doc, false, |k, items| {
            seen.push(k);
            Ok::<_, String>(vec![false; items.len()])
        })
        .unwrap();
        assert_eq!(seen, [ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates]);
        assert_eq!((r.lists, r.removed.len()), (3, 3));
        assert_eq!(r.removed, ["p", "file:///a", "file:///x/{p}"]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(rewrite(b"not json", false, |_| true).is_err());
        assert!(rewrite(b"7", false, |_| true).is_err());
    }

    #[test]
    fn a_read_is_reused_only_for_the_same_text() {
        let a = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#;
        let b = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"c"}]}}"#;
        let names = |p: &Parsed| -> Vec<Option<String>> { p.scanned.iter().map(|s| s.name.clone()).collect() };
        let first = parse_lists_cached("cache-test", a, false).unwrap();
        assert!(first.scanned.iter().all(|s| s.hash.is_none()));
        let again = parse_lists_cached("cache-test", a, false).unwrap();
        assert!(Rc::ptr_eq(&first.scanned, &again.scanned), "the same text: the kept read");
        // Hashes asked for now: read again.
        let hashed = parse_lists_cached("cache-test", a, true).unwrap();
        assert!(hashed.scanned.iter().all(|s| s.hash.is_some()));
        assert!(Rc::ptr_eq(&parse_lists_cached("cache-test", a, false).unwrap().scanned, &hashed.scanned));
        // Another text from the same server, or the same text from another: never the kept read.
        assert_eq!(names(&parse_lists_cached("cache-test", b, true).unwrap()), [Some("a".into()), Some("c".into())]);
        assert!(!Rc::ptr_eq(&parse_lists_cached("other", a, true).unwrap().scanned, &hashed.scanned));
        // A refused text is not kept.
        assert!(parse_lists_cached("cache-test", br#"{"result":{"tools":[{"a":1,"A":2}]}}"#, true).is_err());
        assert!(parse_lists_cached("cache-test", br#"{"result":{"tools":[{"a":1,"A":2}]}}"#, true).is_err());
        // A text over the bound is read every time.
        let big = format!(r#"{{"result":{{"tools":[{{"name":"{}"}}]}}}}"#, "x".repeat(READ_CACHE_BYTES));
        let one = parse_lists_cached("cache-test", big.as_bytes(), true).unwrap();
        assert!(!Rc::ptr_eq(&parse_lists_cached("cache-test", big.as_bytes(), true).unwrap().scanned, &one.scanned));
    }
}
