//! One string form for scalars, so `5`, `5.0` and `"5"` compare equal in
//! argument rules, whether they come from the config or from a request.

use serde_json::Value;

/// The normalised string form of a JSON scalar; `None` for null, arrays and
/// objects (a rule on a non-scalar fails closed).
pub fn normalise(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(normalise_number(n)),
        _ => None,
    }
}

fn normalise_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        // Integral floats print as integers, so 5.0 == 5 and 1e3 == 1000.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => (f as i64).to_string(),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_bools_normalise() {
        assert_eq!(normalise(&json!(5)).unwrap(), "5");
        assert_eq!(normalise(&json!(5.0)).unwrap(), "5");
        assert_eq!(normalise(&serde_json::from_str::<Value>("1e3").unwrap()).unwrap(), "1000");
        assert_eq!(normalise(&json!(-0.5)).unwrap(), "-0.5");
        assert_eq!(normalise(&json!(true)).unwrap(), "true");
        assert_eq!(normalise(&json!("x")).unwrap(), "x");
        assert_eq!(normalise(&json!(null)), None);
        assert_eq!(normalise(&json!([1])), None);
        assert_eq!(normalise(&json!({"a": 1})), None);
    }
}
