//! Argument rules: one tool argument's compiled conditions, checked as the
//! backend will read the value.

use super::pattern::Pattern;
use super::{deny, Denial, DenyReason};
use crate::config::ArgRule;
use crate::request::scalar::Typed;
use serde_json::{Map, Value};

/// One argument's compiled conditions. Comparisons are typed, as the backend
/// will read the value: `equals` / `one_of` hold JSON scalars and are met only
/// by a value of the same type (`equals: false` is not met by `"false"`);
/// `prefix`, `suffix` and `regex` are string rules, met only by JSON strings
/// (`prefix` is a literal byte prefix). A rule on an argument whose value is
/// an array, object or null fails closed.
#[derive(Debug, Clone)]
pub(super) struct ArgCheck {
    arg: String,
    equals: Option<Typed>,
    one_of: Option<Vec<Typed>>,
    prefix: Option<String>,
    suffix: Option<String>,
    /// Anchored: the pattern must match the whole value.
    regex: Option<Pattern>,
    /// `required: false` makes the argument optional; by default a rule on an
    /// argument also requires it (fail closed).
    optional: bool,
}

impl ArgCheck {
    pub(super) fn compile(arg: &str, r: &ArgRule) -> Result<Self, String> {
        let regex = r.regex.as_deref().map(Pattern::new).transpose()?;
        Ok(Self {
            arg: arg.to_string(),
            equals: r.equals.as_ref().map(|s| s.0.clone()),
            one_of: r.one_of.as_ref().map(|v| v.iter().map(|s| s.0.clone()).collect()),
            prefix: r.prefix.clone(),
            suffix: r.suffix.clone(),
            regex,
            optional: r.required == Some(false),
        })
    }

    fn has_string_rule(&self) -> bool {
        self.prefix.is_some() || self.suffix.is_some() || self.regex.is_some()
    }

    pub(super) fn check(&self, tool: &str, args: Option<&Map<String, Value>>) -> Result<(), Denial> {
        let a = &self.arg;
        let Some(value) = args.and_then(|m| m.get(a)) else {
            // `PATH` for a rule on `path`: a case-insensitive decoder (Go's)
            // hands it to the backend as `path`, so it is not "absent".
            if let Some(k) = args.into_iter().flat_map(|m| m.keys()).find(|k| crate::request::fold::fold_eq(k, a)) {
                return deny(
                    DenyReason::ArgumentRule,
                    format!("tool {tool:?}: argument {k:?} is a case variant of {a:?}, which a policy rule governs; send it as {a:?}"),
                );
            }
            if self.optional {
                return Ok(());
            }
            return deny(DenyReason::ArgumentRule, format!("tool {tool:?}: argument {a:?} is required by policy"));
        };
        let fail = |rule: String| {
            deny(DenyReason::ArgumentRule, format!("tool {tool:?}: argument {a:?} violates rule {rule}"))
        };
        if Typed::from_json(value).is_none() {
            return deny(DenyReason::ArgumentRule, format!("tool {tool:?}: argument {a:?} must be a string, number or boolean (rules fail closed on other values)"));
        }
        if let Some(e) = &self.equals {
            if !e.matches(value) {
                return fail(format!("equals {e} (typed: a {} of that value)", kind(e)));
            }
        }
        if let Some(set) = &self.one_of {
            if !set.iter().any(|e| e.matches(value)) {
                let list: Vec<String> = set.iter().map(Typed::to_string).collect();
                return fail(format!("one_of [{}] (typed)", list.join(", ")));
            }
        }
        if self.has_string_rule() {
            let Value::String(s) = value else {
                let rule = if self.prefix.is_some() {
                    "prefix"
                } else if self.suffix.is_some() {
                    "suffix"
                } else {
                    "regex"
                };
                return fail(format!("{rule}: the value must be a JSON string"));
            };
            if let Some(p) = &self.prefix {
                if !s.starts_with(p.as_str()) {
                    return fail(format!("prefix {p:?}"));
                }
            }
            if let Some(p) = &self.suffix {
                if !s.ends_with(p.as_str()) {
                    return fail(format!("suffix {p:?}"));
                }
            }
            if let Some(re) = &self.regex {
                if !re.is_match(s) {
                    return fail(format!("regex {:?}", re.source()));
                }
            }
        }
        Ok(())
    }
}

fn kind(t: &Typed) -> &'static str {
    match t {
        Typed::Str(_) => "string",
        Typed::Num(_) => "number",
        Typed::Bool(_) => "boolean",
    }
}
