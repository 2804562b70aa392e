//! docs/configuration.md must match the parser: every key in its reference
//! table is one `Config` accepts, and every key `Config` accepts is in the
//! table. The accepted keys are not listed by hand here: they are discovered
//! by probing the parser itself (serde's `deny_unknown_fields` error names the
//! fields each object accepts), so a key added to config/ and not documented
//! fails this test.

use mcpx_filter::config::{Config, Mode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const DOC: &str = include_str!("../../docs/configuration.md");
const PROBE: &str = "zz_probe";

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    /// An element of a list of objects: `[]`.
    Item,
    /// A key the user chooses (a tool, client or server name): `<*>`.
    Any,
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Item => s.push_str("[]"),
            Seg::Any => s.push_str(".<*>"),
        }
    }
    s
}

/// A minimal valid config with `value` placed at `path`.
fn config_with(path: &[Seg], value: Value) -> String {
    let mut root = json!({ "servers": [{ "name": "a", "url": "http://h:1" }] });
    let mut cur = &mut root;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let next = || if last { value.clone() } else { json!({}) };
        cur = match seg {
            Seg::Key(k) => {
                let obj = cur.as_object_mut().expect("object on the path");
                // An existing key (the top-level servers[0]) keeps its name and url.
                if last || !obj.contains_key(k) {
                    let v = match path.get(i + 1) {
                        Some(Seg::Item) => json!([{}]),
                        _ => next(),
                    };
                    obj.insert(k.clone(), v);
                }
                obj.get_mut(k).expect("just inserted")
            }
            Seg::Item => {
                let arr = cur.as_array_mut().expect("array on the path");
                if last {
                    arr[0] = value.clone();
                }
                &mut arr[0]
            }
            Seg::Any => {
                let obj = cur.as_object_mut().expect("object on the path");
                obj.insert("k".into(), next());
                obj.get_mut("k").expect("just inserted")
            }
        };
    }
    root.to_string()
}

fn parse_error(text: &str) -> String {
    match Config::from_yaml(text, Mode::Plugin) {
        Ok(_) => String::new(),
        Err(e) => e.message,
    }
}

/// The fields serde lists in "unknown field `X`, expected one of `a`, `b`".
fn expected_fields(msg: &str, unknown: &str) -> Option<Vec<String>> {
    let rest = msg.split(&format!("unknown field `{unknown}`, ")).nth(1)?;
    if rest.starts_with("there are no fields") {
        return Some(Vec::new());
    }
    let list = rest.split(" at line ").next().unwrap_or(rest);
    Some(list.split('`').skip(1).step_by(2).map(str::to_string).collect())
}

/// Every key path the parser accepts below `path`, which is an object with `fields`.
fn walk(path: Vec<Seg>, fields: Vec<String>, out: &mut BTreeSet<String>) {
    for f in fields {
        let mut p = path.clone();
        p.push(Seg::Key(f));
        out.insert(render(&p));
        // An object (or a map whose values are objects)?
        let msg = parse_error(&config_with(&p, json!({ PROBE: { "zz_inner": 1 } })));
        if let Some(inner) = expected_fields(&msg, PROBE) {
            walk(p, inner, out);
            continue;
        }
        if let Some(inner) = expected_fields(&msg, "zz_inner") {
            let mut m = p.clone();
            m.push(Seg::Any);
            out.insert(render(&m));
            walk(m, inner, out);
            continue;
        }
        // A list of objects?
        let msg = parse_error(&config_with(&p, json!([{ PROBE: 1 }])));
        if let Some(inner) = expected_fields(&msg, PROBE) {
            let mut m = p.clone();
            m.push(Seg::Item);
            walk(m, inner, out);
        }
        // Otherwise a value (scalar, list of scalars, or a free map such as env).
    }
}

fn accepted_keys() -> BTreeSet<String> {
    let msg = parse_error(&format!("{{\"{PROBE}\": 1, \"servers\": [{{\"name\": \"a\"}}]}}"));
    let top = expected_fields(&msg, PROBE).unwrap_or_else(|| panic!("probe failed: {msg}"));
    assert!(top.contains(&"servers".to_string()), "{top:?}");
    let mut out = BTreeSet::new();
    walk(Vec::new(), top, &mut out);
    out
}

/// The key column of the reference table: rows like "| `servers[].url` | …".
fn documented_keys() -> BTreeSet<String> {
    DOC.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(k, _)| k))
        .filter(|k| !k.contains(' '))
        .map(normalise)
        .collect()
}

/// `tool_rules.<tool>` and `tool_rules.<*>` are the same key.
fn normalise(key: &str) -> String {
    let mut out = String::new();
    let mut in_angle = false;
    for c in key.chars() {
        match c {
            '<' => {
                in_angle = true;
                out.push_str("<*");
            }
            '>' => {
                in_angle = false;
                out.push('>');
            }
            _ if in_angle => {}
            _ => out.push(c),
        }
    }
    out
}

/// A client override (`clients.<client>.servers.<server>`) takes the same keys
/// as `servers[].policy`; the reference documents them once, under the latter.
fn fold_client_policy(keys: BTreeSet<String>) -> BTreeSet<String> {
    const CLIENT: &str = "clients.<*>.servers.<*>.";
    keys.into_iter()
        .map(|k| k.strip_prefix(CLIENT).map(|rest| format!("servers[].policy.{rest}")).unwrap_or(k))
        .collect()
}

#[test]
fn client_overrides_take_exactly_the_policy_keys() {
    let keys = accepted_keys();
    let policy: BTreeSet<_> = keys.iter().filter_map(|k| k.strip_prefix("servers[].policy.")).collect();
    let client: BTreeSet<_> = keys.iter().filter_map(|k| k.strip_prefix("clients.<*>.servers.<*>.")).collect();
    assert!(!policy.is_empty());
    assert_eq!(policy, client);
}

#[test]
fn every_documented_key_is_accepted_and_every_accepted_key_is_documented() {
    let accepted = fold_client_policy(accepted_keys());
    let documented = documented_keys();
    assert!(accepted.len() > 40, "the probe found too few keys: {accepted:?}");
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md is out of date.\n  accepted by the parser but not documented (add a table row): {undocumented:?}\n  documented but rejected by the parser (remove or fix the row): {unknown:?}"
    );
}

#[test]
fn documented_examples_are_valid_configs() {
    // Every ```yaml block in the reference is a complete, valid mcpx.yaml.
    let mut blocks = 0;
    for block in DOC.split("```yaml\n").skip(1) {
        let text = block.split("```").next().unwrap_or_default();
        Config::from_yaml(text, Mode::Gateway).unwrap_or_else(|e| panic!("invalid example: {e}\n{text}"));
        blocks += 1;
    }
    assert!(blocks >= 2, "docs/configuration.md should have full examples");
}

#[test]
fn the_probe_sees_nested_and_list_keys() {
    // Guards the probe itself: if serde's wording changes, fail loudly here.
    let keys = accepted_keys();
    for k in [
        "servers[].policy.tool_rules.<*>.args.<*>.prefix",
        "auth.clients[].token",
        "auth.oauth.jwks_uri",
        "clients.<*>.servers.<*>.allow_tools",
        "servers[].env",
        "limits.max_body_bytes",
    ] {
        assert!(keys.contains(k), "{k} missing from {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.starts_with("servers[].env.")), "free maps are values, not objects");
}
