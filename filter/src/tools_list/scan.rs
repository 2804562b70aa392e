//! One advertised tool read once from its raw bytes (docs/integrity.md): the
//! strict checks of [`crate::request::jsonrpc::parse_strict`] (no key twice, not even
//! under case folding, at any depth; valid UTF-8 and escapes; numbers in
//! range), the RFC 8785 canonical text its pin is over (written straight from
//! the parse, no `Value` tree in between), its `name`, and whether it can
//! carry an `x-mcp-header` annotation. The tools/list inspection visits each
//! tool once with this and splices the bytes of the tools it keeps into the
//! answer (see [`crate::tools_list::rewrite::parse_lists`]).
//!
//! The bytes are read by serde_json, the parser the rest of the gateway
//! decides on, so the tool read here is the tool the tree parse would read.

use crate::integrity::{utf16_cmp, write_es_number, write_string};
use crate::request::fold::fold_eq;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;

/// What one tool's single read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedTool {
    /// The top-level `name` member, when the tool is an object and it is a string.
    pub name: Option<String>,
    /// The SHA-256 (hex) of the canonical text, when asked for and the tool
    /// is an object with a string `name` (what the integrity check pins).
    pub hash: Option<String>,
    /// Some object has an `x-mcp-header` member, or the tool nests deeper
    /// than a header scan walks without refusing: only then must its
    /// schema be scanned (see [`crate::headers::paramheaders::scan`]).
    pub needs_header_scan: bool,
}

/// The key that declares a header (an exact, case-sensitive member name, as
/// [`crate::headers::paramheaders::scan`] reads it).
const ANNOTATION: &str = crate::headers::paramheaders::ANNOTATION;

/// Objects nested deeper than this inside a tool make
/// [`crate::headers::paramheaders::scan`] refuse its schema, so such a tool is scanned
/// in full even without an annotation.
const SCAN_DEPTH: usize = 64;

/// One object's members while it is read: the key (borrowed from the input
/// when it has no escapes), and where its value's canonical text starts and
/// ends in the output.
type Member<'de> = (Cow<'de, str>, usize, usize);

/// Buffers reused from tool to tool of one list (`'de`: the answer's text),
/// so reading a tool allocates little beyond its name and hash.
#[derive(Default)]
pub struct Scanner<'de> {
    out: String,
    scratch: String,
    /// Member lists, one per object being read (objects nest).
    pool: Vec<Vec<Member<'de>>>,
}

impl<'de> Scanner<'de> {
    /// Reads one tool (`raw`: its exact bytes, as captured from the answer),
    /// refusing it (`Err`) where the strict parse would refuse the answer.
    /// `max_depth` is how many objects and arrays may nest inside it,
    /// counting itself (the parser's limit less the levels around it).
    pub fn scan(&mut self, raw: &'de str, hash: bool, max_depth: usize) -> Result<ScannedTool, String> {
        self.scan_measured(raw, hash, max_depth).map(|(read, _)| read)
    }

    /// [`Scanner::scan`], reusing this VM's read of a tool with exactly
    /// the same text (see [`KEPT_TOOL_BYTES`]). A read depends on the text,
    /// on `hash`, and on `max_depth` only through the depth check, so a kept
    /// read serves when it was hashed (or need not be) and the tool nests no
    /// deeper than `max_depth` allows; a refused tool is never kept.
    pub fn read(&mut self, raw: &'de str, hash: bool, max_depth: usize) -> Result<Rc<ScannedTool>, String> {
        let kept = KEPT.with(|k| {
            k.borrow()
                .tools
                .get(raw)
                .filter(|t| t.deepest <= max_depth && (t.hashed || !hash))
                .map(|t| Rc::clone(&t.read))
        });
        if let Some(read) = kept {
            return Ok(read);
        }
        let (read, deepest) = self.scan_measured(raw, hash, max_depth)?;
        let read = Rc::new(read);
        if raw.len() <= KEPT_TOOL_BYTES {
            KEPT.with(|k| {
                let mut k = k.borrow_mut();
                if k.bytes + raw.len() > KEPT_TOOL_BYTES {
                    k.tools.clear();
                    k.bytes = 0;
                }
                let entry = KeptTool { deepest, hashed: hash, read: Rc::clone(&read) };
                if k.tools.insert(raw.into(), entry).is_none() {
                    k.bytes += raw.len();
                }
            });
        }
        Ok(read)
    }

    /// The read, and how deep the tool nests (counting itself).
    fn scan_measured(&mut self, raw: &'de str, hash: bool, max_depth: usize) -> Result<(ScannedTool, usize), String> {
        self.out.clear();
        let mut st = State {
            canon: hash,
            out: &mut self.out,
            scratch: &mut self.scratch,
            pool: &mut self.pool,
            depth: 0,
            max_depth,
            deepest: 0,
            annotated: false,
            capture: false,
            name: None,
        };
        let mut de = serde_json::Deserializer::from_str(raw);
        Canon { st: &mut st }.deserialize(&mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        let deepest = st.deepest;
        let (name, needs_header_scan) = (st.name.take(), st.annotated || deepest > SCAN_DEPTH);
        let is_object = raw.starts_with('{');
        let hash = match (&name, is_object && hash) {
            (Some(_), true) => Some(crate::integrity::hex_sha256(self.out.as_bytes())),
            _ => None,
        };
        Ok((ScannedTool { name: name.filter(|_| is_object), hash, needs_header_scan }, deepest))
    }
}

/// A VM keeps its reads of the tools it read, keyed by their exact text,
/// while those texts total at most this many bytes (then it starts over).
/// A backend answers the same tools again and again, each time under a new
/// JSON-RPC id: the answer differs, its tools do not, and a kept read spares
/// the strict read, the canonical text and SHA-256 of each. The key is the
/// whole text, compared byte for byte (SipHash with a per-process key picks
/// the bucket, so a backend cannot flood one); the decision (pins, policy,
/// header maps) is still made on every answer.
pub const KEPT_TOOL_BYTES: usize = 2 << 20;

struct KeptTool {
    deepest: usize,
    hashed: bool,
    read: Rc<ScannedTool>,
}

#[derive(Default)]
struct Kept {
    tools: std::collections::HashMap<Box<str>, KeptTool>,
    /// The total length of the keys.
    bytes: usize,
}

thread_local! {
    static KEPT: std::cell::RefCell<Kept> = std::cell::RefCell::new(Kept::default());
}

/// Forgets every kept tool read (tests and benchmarks of a first read).
pub fn forget_kept_reads() {
    KEPT.with(|k| *k.borrow_mut() = Kept::default());
}

struct State<'s, 'de> {
    /// Write the canonical text (only when the tool is hashed).
    canon: bool,
    out: &'s mut String,
    /// Where an object's members are reordered (objects finish innermost
    /// first, so one buffer serves every level).
    scratch: &'s mut String,
    pool: &'s mut Vec<Vec<Member<'de>>>,
    depth: usize,
    max_depth: usize,
    deepest: usize,
    annotated: bool,
    /// The next string is the tool's top-level `name`.
    capture: bool,
    name: Option<String>,
}

/// A seed and visitor writing one value's canonical text.
struct Canon<'a, 's, 'de> {
    st: &'a mut State<'s, 'de>,
}

impl<'de> DeserializeSeed<'de> for Canon<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Canon<'_, '_, '_> {
    fn string(self, v: &str) {
        if std::mem::take(&mut self.st.capture) {
            self.st.name = Some(v.to_owned());
        }
        if self.st.canon {
            write_string(v, self.st.out);
        }
    }
    fn literal(self, text: &str) {
        self.st.capture = false;
        if self.st.canon {
            self.st.out.push_str(text);
        }
    }
    fn number(self, x: f64) {
        self.st.capture = false;
        if self.st.canon {
            write_es_number(x, self.st.out);
        }
    }
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.st.capture = false;
        self.st.depth += 1;
        self.st.deepest = self.st.deepest.max(self.st.depth);
        if self.st.depth > self.st.max_depth {
            return Err(E::custom("recursion limit exceeded"));
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// At most this many keys are compared pairwise; larger objects go through
/// [`crate::request::fold::duplicate`] (sorted, so never quadratic).
const PAIRWISE_MAX: usize = 8;

fn has_duplicate(keys: &[Member<'_>]) -> bool {
    if keys.len() <= PAIRWISE_MAX {
        return keys.iter().enumerate().any(|(j, (b, _, _))| keys.iter().take(j).any(|(a, _, _)| fold_eq(a, b)));
    }
    let all: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_ref()).collect();
    crate::request::fold::duplicate(&all).is_some()
}

impl<'de> Visitor<'de> for Canon<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.literal(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.literal("null");
        Ok(())
    }
    // Every number is a double in the canonical form, as in `write_number`.
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.number(v as f64);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.number(v as f64);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if !v.is_finite() {
            return Err(E::custom("number out of range"));
        }
        self.number(v);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.string(v);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        if self.st.canon {
            self.st.out.push('[');
        }
        let mut first = true;
        loop {
            if self.st.canon && !first {
                self.st.out.push(',');
            }
            if seq.next_element_seed(Canon { st: &mut *self.st })?.is_none() {
                break;
            }
            first = false;
        }
        if self.st.canon {
            if !first {
                // The comma written before the end was found.
                self.st.out.pop();
            }
            self.st.out.push(']');
        }
        self.st.depth -= 1;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        let top = self.st.depth == 1;
        let start = self.st.out.len();
        let mut members = self.st.pool.pop().unwrap_or_default();
        while let Some(key) = map.next_key_seed(Key)? {
            self.st.annotated |= key == ANNOTATION;
            self.st.capture = top && key == "name";
            let from = self.st.out.len();
            map.next_value_seed(Canon { st: &mut *self.st })?;
            self.st.capture = false;
            members.push((key, from, self.st.out.len()));
        }
        if has_duplicate(&members) {
            return Err(de::Error::custom("duplicate key"));
        }
        if self.st.canon {
            // The values were written in input order; write the members
            // again in UTF-16 key order, each value copied from `scratch`.
            members.sort_unstable_by(|a, b| utf16_cmp(&a.0, &b.0));
            let scratch = &mut *self.st.scratch;
            scratch.clear();
            scratch.push_str(self.st.out.get(start..).unwrap_or(""));
            let out = &mut *self.st.out;
            out.truncate(start);
            out.push('{');
            for (i, (key, from, to)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                out.push_str(scratch.get(from - start..to - start).unwrap_or(""));
            }
            out.push('}');
        }
        members.clear();
        self.st.pool.push(members);
        self.st.depth -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::{canonical_json, tool_hash};
    use serde_json::Value;

    fn scan(raw: &str) -> Result<ScannedTool, String> {
        Scanner::default().scan(raw, true, 120)
    }

    #[test]
    fn the_hash_is_the_tree_hash() {
        for raw in [
            r#"{"name":"echo","description":"Echo","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}}"#,
            r#"{ "name" : "e\u0063ho", "n": [1, 1.0, -0, 1e21, 1E-7, 18446744073709551615, -9223372036854775808, 0.1, []],
                "z\ud83d\ude00": {"\uFB33": {}, "\ud83d\ude00": [{}], "a\"\\\n\u0001": null}, "t": true, "f": false }"#,
            r#"{"name":"x","b":{"y":1,"x":{"d":[{"b":2,"a":1}],"c":"\u00e9"}},"a":"é"}"#,
        ] {
            let v: Value = serde_json::from_str(raw).unwrap();
            let s = scan(raw).unwrap();
            assert_eq!(s.hash.as_deref(), Some(tool_hash(&v).as_str()), "{raw}\n{}", canonical_json(&v));
            assert_eq!(s.name.as_deref(), v["name"].as_str());
        }
    }

    #[test]
    fn name_annotation_and_refusals() {
        let s = scan(r#"{"description":{"name":"inner"},"name":"outer"}"#).unwrap();
        assert_eq!(s.name.as_deref(), Some("outer"));
        assert!(!s.needs_header_scan);
        // A name that is not a string, or a tool that is not an object: no name, no hash.
        assert_eq!(scan(r#"{"name":{"name":"x"}}"#).unwrap().name, None);
        assert_eq!(scan(r#"["name","x"]"#).unwrap(), ScannedTool { name: None, hash: None, needs_header_scan: false });
        assert!(
            scan(r#"{"name":"a","inputSchema":{"properties":{"r":{"x-mcp-header":"R"}}}}"#).unwrap().needs_header_scan
        );
        let deep = format!("{{\"name\":\"d\",\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        assert!(scan(&deep).unwrap().needs_header_scan);
        for bad in [
            r#"{"name":"a","name":"b"}"#,
            r#"{"name":"a","s":{"σ":1,"ς":2}}"#,
            r#"{"name":"a","Name":"b"}"#,
            r#"{"name":"a","k":{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"\u212A1":1}}"#,
            r#"{"name":"\ud800"}"#,
            r#"{"name":1e400}"#,
            r#"{"name":"a"} x"#,
        ] {
            assert!(scan(bad).is_err(), "{bad}");
        }
        // The nesting limit counts the tool itself.
        assert!(Scanner::default().scan("[[[1]]]", true, 3).is_ok());
        assert!(Scanner::default().scan("[[[1]]]", true, 2).is_err());
    }

    /// A kept read answers exactly what a fresh read answers: for the same
    /// text, with or without the hash, and at any allowed depth; it never
    /// serves a depth the text exceeds, nor a hash it was not asked for.
    #[test]
    fn a_kept_read_is_the_read_it_replaces() {
        forget_kept_reads();
        let texts = [
            r#"{"name":"echo","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}"#,
            r#"{"name":"a","inputSchema":{"properties":{"r":{"x-mcp-header":"R"}}}}"#,
            r#"["name","x"]"#,
            r#"{"name":"d","a":[[[[1]]]]}"#,
        ];
        let mut scanner = Scanner::default();
        for raw in texts {
            for (hash, depth) in [(false, 120), (true, 120), (false, 120), (true, 6), (true, 120)] {
                let fresh = Scanner::default().scan(raw, hash, depth);
                let read = scanner.read(raw, hash, depth).map(|r| (*r).clone());
                match (&fresh, &read) {
                    (Ok(f), Ok(r)) if hash => assert_eq!(f, r, "{raw}"),
                    // Unhashed, a kept hashed read may carry its hash.
                    (Ok(f), Ok(r)) => assert_eq!((&f.name, f.needs_header_scan), (&r.name, r.needs_header_scan)),
                    _ => assert_eq!(fresh, read, "{raw} at depth {depth}"),
                }
            }
        }
        // Kept at depth 120 (it nests 5 deep), then asked within 4: refused as a fresh read is.
        let deep = texts[3];
        assert!(scanner.read(deep, true, 5).is_ok());
        assert_eq!(scanner.read(deep, true, 4).map(|r| (*r).clone()), Scanner::default().scan(deep, true, 4));
        assert!(scanner.read(deep, true, 4).is_err());
        // Kept without its hash, then asked for it: read again, hashed.
        forget_kept_reads();
        assert_eq!(scanner.read(texts[0], false, 120).map(|r| r.hash.clone()), Ok(None));
        assert!(scanner.read(texts[0], true, 120).is_ok_and(|r| r.hash.is_some()));
        // A refused text is never kept.
        assert!(scanner.read(r#"{"name":"a","Name":"b"}"#, true, 120).is_err());
        assert!(KEPT.with(|k| !k.borrow().tools.contains_key(r#"{"name":"a","Name":"b"}"#)));
    }

    #[test]
    fn the_kept_reads_are_bounded() {
        forget_kept_reads();
        let mut scanner = Scanner::default();
        let filler = "x".repeat(100_000);
        let texts: Vec<String> = (0..60).map(|i| format!(r#"{{"name":"t{i}","d":"{filler}"}}"#)).collect();
        for (i, raw) in texts.iter().enumerate() {
            assert!(scanner.read(raw, true, 120).is_ok());
            let (bytes, keys) = KEPT.with(|k| {
                let k = k.borrow();
                (k.bytes, k.tools.keys().map(|t| t.len()).sum::<usize>())
            });
            assert!(bytes <= KEPT_TOOL_BYTES && bytes == keys, "after {i}: {bytes} bytes kept, keys {keys}");
        }
        assert!(KEPT.with(|k| k.borrow().tools.len()) < texts.len());
    }
}
