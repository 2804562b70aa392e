//! Rewriting `tools/list` responses: dropping the tools a caller may not call
//! (SPEC §3 tools/list) while keeping every other field (`nextCursor`,
//! caching fields, `resultType`) as it was.

use serde_json::Value;

/// What the rewrite did, for audit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListRewrite {
    /// The new body, when anything changed.
    pub body: Option<Vec<u8>>,
    pub removed: Vec<String>,
}

/// Filters the `result.tools` of every response whose id is in `list_ids`
/// (a single response or a batch). `keep` decides per tool object. With
/// `private`, a filtered result is marked `cacheScope: private` so no shared
/// cache serves one caller's view to another.
///
/// Returns `Err` when the body is not a JSON-RPC response: the caller must
/// not let an uninspectable list through.
pub fn rewrite(
    body: &[u8],
    list_ids: &[Value],
    private: bool,
    mut keep: impl FnMut(&Value) -> bool,
) -> Result<ListRewrite, String> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| format!("tools/list response is not JSON: {e}"))?;
    let mut out = ListRewrite::default();
    let changed =
        rewrite_value(&mut doc, list_ids, private, |tools| Ok::<_, String>(tools.iter().map(&mut keep).collect()))?;
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
    pub removed: Vec<String>,
}

/// The in-place core of [`rewrite`]: `mask` sees the whole `tools` array of
/// each list result and says which to keep (one bool per tool; missing
/// entries mean drop). Errors from `mask`, and a body that is not a JSON-RPC
/// object or batch, are returned.
pub fn rewrite_value<E: From<String>>(
    doc: &mut Value,
    list_ids: &[Value],
    private: bool,
    mut mask: impl FnMut(&[Value]) -> Result<Vec<bool>, E>,
) -> Result<ValueRewrite, E> {
    let mut out = ValueRewrite::default();
    let mut visit = |msg: &mut Value| -> Result<(), E> {
        let is_list = msg.get("id").is_some_and(|id| list_ids.contains(id));
        let Some(result) = msg.get_mut("result").filter(|_| is_list).and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(Value::Array(tools)) = result.get_mut("tools") {
            let keep = mask(tools)?;
            let before = tools.len();
            let mut i = 0;
            tools.retain(|t| {
                let k = keep.get(i).copied().unwrap_or(false);
                i += 1;
                if !k {
                    let name = t.get("name").and_then(Value::as_str).unwrap_or("<unnamed>");
                    out.removed.push(name.to_string());
                }
                k
            });
            out.changed |= tools.len() != before;
        }
        if private {
            result.insert("cacheScope".into(), Value::String("private".into()));
            out.changed = true;
        }
        Ok(())
    };
    match doc {
        Value::Array(items) => items.iter_mut().try_for_each(&mut visit)?,
        Value::Object(_) => visit(doc)?,
        _ => return Err(E::from("tools/list response is not a JSON-RPC object".to_string())),
    }
    Ok(out)
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
        let r = rewrite(body.as_bytes(), &[json!(1)], false, |t| t["name"] != "b").unwrap();
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
        assert_eq!(rewrite(body.as_bytes(), &[json!("x")], false, |_| true).unwrap().body, None);
        let r = rewrite(body.as_bytes(), &[json!("x")], true, |_| true).unwrap();
        let v: Value = serde_json::from_slice(&r.body.unwrap()).unwrap();
        assert_eq!(v["result"]["cacheScope"], "private");
    }

    #[test]
    fn only_list_responses_in_a_batch() {
        let body = json!([
            {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}},
            {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"b"}]}}
        ])
        .to_string();
        let r = rewrite(body.as_bytes(), &[json!(1)], false, |t| t["name"] != "b").unwrap();
        let v: Value = serde_json::from_slice(&r.body.unwrap()).unwrap();
        assert_eq!(v[0]["result"]["tools"].as_array().unwrap().len(), 1);
        assert_eq!(v[1]["result"]["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(rewrite(b"not json", &[json!(1)], false, |_| true).is_err());
        assert!(rewrite(b"7", &[json!(1)], false, |_| true).is_err());
    }
}
