//! Scalars for argument rules, compared as the backend will read them.
//!
//! A rule's value keeps its JSON type: `equals: false` is met only by the JSON
//! boolean `false`, never by the string `"false"` (which JavaScript and Python
//! treat as true), and `equals: 5` by the numbers `5`, `5.0` or `5e0` but not
//! by `"5"`. Numbers compare by value through one string form ([`normalise`]),
//! so `5.0 == 5` and `1e3 == 1000`.

use serde_json::Value;

/// A JSON scalar with its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Typed {
    Str(String),
    /// The normalised form of the number (see [`normalise`]).
    Num(String),
    Bool(bool),
}

impl Typed {
    /// `None` for null, arrays and objects (a rule on them fails closed).
    pub fn from_json(v: &Value) -> Option<Typed> {
        match v {
            Value::String(s) => Some(Typed::Str(s.clone())),
            Value::Bool(b) => Some(Typed::Bool(*b)),
            Value::Number(n) => Some(Typed::Num(normalise_number(n))),
            _ => None,
        }
    }

    /// Whether a request value `v` is this scalar: same JSON type and value.
    pub fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Typed::Str(a), Value::String(b)) => a == b,
            (Typed::Bool(a), Value::Bool(b)) => a == b,
            (Typed::Num(a), Value::Number(b)) => exact_everywhere(b) && *a == normalise_number(b),
            _ => false,
        }
    }

    /// The value as JSON (for messages and config output).
    pub fn to_json(&self) -> Value {
        match self {
            Typed::Str(s) => Value::String(s.clone()),
            Typed::Bool(b) => Value::Bool(*b),
            Typed::Num(n) => serde_json::from_str(n).unwrap_or_else(|_| Value::String(n.clone())),
        }
    }
}

impl std::fmt::Display for Typed {
    /// JSON text, so a message tells `"5"` from `5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

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

/// 2^53: beyond it JavaScript (and Go's float64) round integers while
/// Python keeps them exact, so decoders disagree on the value.
const SAFE: f64 = 9_007_199_254_740_992.0;

/// Whether every common decoder reads `n` as the same value: magnitude
/// within 2^53. (An integer too large for u64 reaches here as a float, so
/// it is excluded too.) Outside that range a numeric rule is never met.
fn exact_everywhere(n: &serde_json::Number) -> bool {
    if let Some(i) = n.as_i64() {
        return i.unsigned_abs() <= SAFE as u64;
    }
    if let Some(u) = n.as_u64() {
        return u <= SAFE as u64;
    }
    n.as_f64().is_some_and(|f| f.abs() <= SAFE)
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
    fn typed_matching_keeps_the_json_type() {
        let t = |v: Value| Typed::from_json(&v).unwrap();
        assert!(t(json!(false)).matches(&json!(false)));
        assert!(!t(json!(false)).matches(&json!("false")));
        assert!(!t(json!("false")).matches(&json!(false)));
        assert!(!t(json!(true)).matches(&json!(1)));
        assert!(t(json!(5)).matches(&json!(5.0)));
        assert!(t(json!(5)).matches(&serde_json::from_str::<Value>("5e0").unwrap()));
        assert!(!t(json!(5)).matches(&json!("5")));
        assert!(!t(json!("5")).matches(&json!(5)));
        assert!(t(json!("a")).matches(&json!("a")));
        assert!(!t(json!(0)).matches(&json!(null)));
        // Beyond 2^53 decoders disagree on the value: never a match.
        let big = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert!(t(big("9007199254740992")).matches(&big("9007199254740992")));
        assert!(!t(big("9007199254740993")).matches(&big("9007199254740993")));
        assert!(!t(big("100000000000000000000")).matches(&big("100000000000000000001")));
        assert!(!t(big("1e300")).matches(&big("1e300")));
        assert!(!t(json!("x")).matches(&json!(["x"])));
        assert_eq!(Typed::from_json(&json!(null)), None);
        assert_eq!(t(json!(5)).to_string(), "5");
        assert_eq!(t(json!("5")).to_string(), "\"5\"");
    }

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
