//! Tool, resource and prompt policy (docs/policy.md).
//!
//! A [`Policy`] is compiled once at configure time (regexes included). The
//! effective decision for a request is the server's policy AND the client's
//! override, each checked in turn, so an override can only narrow.

use crate::config::{ArgRule, PolicyConfig};
use crate::request::resource_uri;
use crate::request::scalar::Typed;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What a message asks the backend to do, as far as policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action<'a> {
    CallTool {
        name: &'a str,
        args: Option<&'a Map<String, Value>>,
    },
    ReadResource {
        uri: &'a str,
    },
    GetPrompt {
        name: &'a str,
    },
    /// Discovery (`initialize`, `ping`, `*/list`, `server/discover`),
    /// notifications and everything the backend owns the answer to.
    Other,
}

/// The methods policy looks into; a case variant of one is refused, since a
/// lenient backend might treat `Tools/Call` as `tools/call`.
const POLICED_METHODS: [&str; 4] = ["tools/call", "resources/read", "resources/subscribe", "prompts/get"];

/// A message whose shape is wrong for its method (HTTP 400, -32602).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidParams(pub String);

impl<'a> Action<'a> {
    pub fn classify(method: &str, params: Option<&'a Value>) -> Result<Action<'a>, InvalidParams> {
        let obj = || -> Result<&'a Map<String, Value>, InvalidParams> {
            match params {
                Some(Value::Object(o)) => Ok(o),
                _ => Err(InvalidParams(format!("{method} needs \"params\" as an object"))),
            }
        };
        let string = |o: &'a Map<String, Value>, key: &str| -> Result<&'a str, InvalidParams> {
            match o.get(key) {
                Some(Value::String(s)) => Ok(s),
                _ => Err(InvalidParams(format!("{method} needs \"params.{key}\" as a string"))),
            }
        };
        // A case variant of a member the decision reads (`Name`, `Arguments`,
        // `URI`) is what a case-insensitive backend reads instead.
        let spelled = |o: &'a Map<String, Value>, members: &[&str]| -> Result<&'a Map<String, Value>, InvalidParams> {
            crate::request::jsonrpc::check_spelling(o, members, "params member").map_err(InvalidParams)?;
            Ok(o)
        };
        let clean = |what: &str, name: &'a str| -> Result<&'a str, InvalidParams> {
            match crate::request::jsonrpc::name_problem(name) {
                Some(why) => Err(InvalidParams(format!("{method}: {what} {name:?} {why}"))),
                None => Ok(name),
            }
        };
        match method {
            "tools/call" => {
                let o = spelled(obj()?, &["name", "arguments"])?;
                let args = match o.get("arguments") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(a)) => Some(a),
                    Some(_) => return Err(InvalidParams("tools/call needs \"params.arguments\" as an object".into())),
                };
                Ok(Action::CallTool { name: clean("tool name", string(o, "name")?)?, args })
            }
            // Subscribing to a resource one may not read would still leak its
            // update notifications, so it is held to the same URI rules.
            "resources/read" | "resources/subscribe" => {
                Ok(Action::ReadResource { uri: string(spelled(obj()?, &["uri"])?, "uri")? })
            }
            "prompts/get" => {
                let o = spelled(obj()?, &["name", "arguments"])?;
                Ok(Action::GetPrompt { name: clean("prompt name", string(o, "name")?)? })
            }
            m if POLICED_METHODS.iter().any(|p| p.eq_ignore_ascii_case(m)) => {
                Err(InvalidParams(format!("method {m:?} is not a valid MCP method; method names are case-sensitive")))
            }
            _ => Ok(Action::Other),
        }
    }
}

/// Why a message was refused. The message names the tool (or resource or
/// prompt) and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    pub message: String,
}

/// The rule that refused, as a stable short word for audit and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    DenyList,
    NotAllowed,
    ReadOnly,
    ArgumentRule,
    Integrity,
    /// A resource URI with dot segments or encoded separators (fail closed).
    ResourceUri,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::DenyList => "deny_list",
            DenyReason::NotAllowed => "not_allowed",
            DenyReason::ReadOnly => "read_only",
            DenyReason::ArgumentRule => "argument_rule",
            DenyReason::Integrity => "integrity",
            DenyReason::ResourceUri => "resource_uri",
        }
    }
}

fn deny(reason: DenyReason, message: String) -> Result<(), Denial> {
    Err(Denial { reason, message })
}

/// One argument's compiled conditions. Comparisons are typed, as the backend
/// will read the value: `equals` / `one_of` hold JSON scalars and are met only
/// by a value of the same type (`equals: false` is not met by `"false"`);
/// `prefix`, `suffix` and `regex` are string rules, met only by JSON strings
/// (`prefix` is a literal byte prefix). A rule on an argument whose value is
/// an array, object or null fails closed.
#[derive(Debug, Clone)]
struct ArgCheck {
    arg: String,
    equals: Option<Typed>,
    one_of: Option<Vec<Typed>>,
    prefix: Option<String>,
    suffix: Option<String>,
    /// Anchored: the pattern must match the whole value.
    regex: Option<(String, regex_lite::Regex)>,
    /// `required: false` makes the argument optional; by default a rule on an
    /// argument also requires it (fail closed).
    optional: bool,
}

impl ArgCheck {
    fn compile(arg: &str, r: &ArgRule) -> Result<Self, String> {
        let regex = match &r.regex {
            Some(re) => Some((re.clone(), regex_lite::Regex::new(&format!("^(?:{re})$")).map_err(|e| e.to_string())?)),
            None => None,
        };
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

    fn check(&self, tool: &str, args: Option<&Map<String, Value>>) -> Result<(), Denial> {
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
            if let Some((src, re)) = &self.regex {
                if !re.is_match(s) {
                    return fail(format!("regex {src:?}"));
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

/// A compiled policy layer.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow_tools: Option<BTreeSet<String>>,
    deny_tools: BTreeSet<String>,
    read_only: bool,
    rules: BTreeMap<String, Vec<ArgCheck>>,
    allow_resources: Vec<String>,
    deny_resources: Vec<String>,
    allow_prompts: Option<BTreeSet<String>>,
    deny_prompts: BTreeSet<String>,
}

/// Resource prefixes in the normal form URIs are compared in.
fn resource_prefixes(v: &[String], key: &str) -> Result<Vec<String>, String> {
    v.iter()
        .enumerate()
        .map(|(i, p)| {
            resource_uri::normalise(p).map_err(|why| format!("{key}[{i}]: {p:?} is not usable because {why}"))
        })
        .collect()
}

fn set_or_all(v: &[String]) -> Option<BTreeSet<String>> {
    (!v.is_empty()).then(|| v.iter().cloned().collect())
}

impl Policy {
    pub fn compile(p: &PolicyConfig) -> Result<Self, String> {
        let mut rules = BTreeMap::new();
        for (tool, rule) in &p.tool_rules {
            let checks = rule
                .args
                .iter()
                .map(|(arg, r)| {
                    ArgCheck::compile(arg, r).map_err(|e| format!("tool_rules.{tool}.args.{arg}.regex: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(tool.clone(), checks);
        }
        Ok(Self {
            allow_tools: set_or_all(&p.allow_tools),
            deny_tools: p.deny_tools.iter().cloned().collect(),
            read_only: p.read_only,
            rules,
            allow_resources: resource_prefixes(&p.allow_resources, "allow_resources")?,
            deny_resources: resource_prefixes(&p.deny_resources, "deny_resources")?,
            allow_prompts: set_or_all(&p.allow_prompts),
            deny_prompts: p.deny_prompts.iter().cloned().collect(),
        })
    }

    /// Whether the tool may be called at all (ignoring arguments): the test
    /// used to filter `tools/list`.
    pub fn tool_visible(&self, tool: &str) -> bool {
        self.check_tool_name(tool).is_ok()
    }

    fn check_tool_name(&self, tool: &str) -> Result<(), Denial> {
        if self.deny_tools.contains(tool) {
            return deny(DenyReason::DenyList, format!("tool {tool:?} is denied by policy (deny_tools)"));
        }
        if let Some(allow) = &self.allow_tools {
            if !allow.contains(tool) {
                return deny(
                    DenyReason::NotAllowed,
                    format!("tool {tool:?} is not allowed by policy (not in allow_tools)"),
                );
            }
        }
        if self.read_only {
            return deny(DenyReason::ReadOnly, format!("tool {tool:?} cannot be called: the server is read_only"));
        }
        Ok(())
    }

    pub fn check(&self, action: &Action<'_>) -> Result<(), Denial> {
        match *action {
            Action::CallTool { name, args } => {
                self.check_tool_name(name)?;
                for c in self.rules.get(name).into_iter().flatten() {
                    c.check(name, args)?;
                }
                Ok(())
            }
            Action::ReadResource { uri } => {
                if self.allow_resources.is_empty() && self.deny_resources.is_empty() {
                    return Ok(());
                }
                // Compare normal forms; refuse what a backend might resolve
                // differently from the text (crate::request::resource_uri).
                let norm = match resource_uri::normalise(uri) {
                    Ok(n) => n,
                    Err(why) => {
                        return deny(
                            DenyReason::ResourceUri,
                            format!("resource {uri:?} is refused because {why} (resource rules apply to this server)"),
                        )
                    }
                };
                if let Some(p) = self.deny_resources.iter().find(|p| norm.starts_with(p.as_str())) {
                    return deny(
                        DenyReason::DenyList,
                        format!("resource {uri:?} is denied by policy (deny_resources {p:?})"),
                    );
                }
                if !self.allow_resources.is_empty()
                    && !self.allow_resources.iter().any(|p| norm.starts_with(p.as_str()))
                {
                    return deny(
                        DenyReason::NotAllowed,
                        format!("resource {uri:?} is not allowed by policy (no allow_resources prefix matches)"),
                    );
                }
                Ok(())
            }
            Action::GetPrompt { name } => {
                if self.deny_prompts.contains(name) {
                    return deny(DenyReason::DenyList, format!("prompt {name:?} is denied by policy (deny_prompts)"));
                }
                if matches!(&self.allow_prompts, Some(a) if !a.contains(name)) {
                    return deny(
                        DenyReason::NotAllowed,
                        format!("prompt {name:?} is not allowed by policy (not in allow_prompts)"),
                    );
                }
                Ok(())
            }
            Action::Other => Ok(()),
        }
    }
}

/// The layers in force for one request: the server's and, for an identified
/// client with an override, the client's.
#[derive(Debug, Clone, Copy)]
pub struct Effective<'a> {
    pub server: &'a Policy,
    pub client: Option<&'a Policy>,
}

impl Effective<'_> {
    pub fn check(&self, action: &Action<'_>) -> Result<(), Denial> {
        self.server.check(action)?;
        match self.client {
            Some(c) => c.check(action),
            None => Ok(()),
        }
    }

    pub fn tool_visible(&self, tool: &str) -> bool {
        self.server.tool_visible(tool) && self.client.is_none_or(|c| c.tool_visible(tool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(yaml: &str) -> Policy {
        Policy::compile(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn call<'a>(v: &'a Value) -> Action<'a> {
        Action::classify("tools/call", Some(v)).unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy("{allow_tools: [a, b], deny_tools: [b]}");
        assert!(p.check(&call(&json!({"name": "a"}))).is_ok());
        assert_eq!(p.check(&call(&json!({"name": "b"}))).unwrap_err().reason, DenyReason::DenyList);
        assert_eq!(p.check(&call(&json!({"name": "c"}))).unwrap_err().reason, DenyReason::NotAllowed);
    }

    #[test]
    fn read_only_blocks_calls_not_discovery() {
        let p = policy("{read_only: true}");
        assert_eq!(p.check(&call(&json!({"name": "a"}))).unwrap_err().reason, DenyReason::ReadOnly);
        assert!(p.check(&Action::classify("tools/list", None).unwrap()).is_ok());
    }

    #[test]
    fn client_override_only_narrows() {
        let server = policy("{allow_tools: [a, b]}");
        let client = policy("{allow_tools: [b, c]}");
        let eff = Effective { server: &server, client: Some(&client) };
        assert!(eff.check(&call(&json!({"name": "b"}))).is_ok());
        assert!(eff.check(&call(&json!({"name": "a"}))).is_err());
        assert!(eff.check(&call(&json!({"name": "c"}))).is_err(), "client allow cannot widen");
        assert!(!eff.tool_visible("c"));
    }

    #[test]
    fn argument_rules() {
        let p = policy(
            r#"{tool_rules: {t: {args: {
            path: {prefix: "/data/", suffix: ".txt"},
            mode: {one_of: [r, 1, true], required: false},
            n: {equals: 5},
            id: {regex: "[a-z]+"}}}}}"#,
        );
        let ok = json!({"name": "t", "arguments": {"path": "/data/a.txt", "n": 5.0, "id": "abc"}});
        assert!(p.check(&call(&ok)).is_ok());
        for (args, why) in [
            (json!({"path": "/etc/a.txt", "n": 5, "id": "a"}), "prefix"),
            (json!({"path": "/data/a.sh", "n": 5, "id": "a"}), "suffix"),
            (json!({"path": "/data/a.txt", "n": "5", "id": "a", "mode": "w"}), "one_of"),
            (json!({"path": "/data/a.txt", "n": 6, "id": "a"}), "equals"),
            (json!({"path": "/data/a.txt", "n": 5, "id": "abc1"}), "regex"),
            (json!({"path": ["/data/a.txt"], "n": 5, "id": "a"}), "must be a string"),
            (json!({"n": 5, "id": "a"}), "required"),
        ] {
            let v = json!({"name": "t", "arguments": args});
            let e = p.check(&call(&v)).unwrap_err();
            assert!(e.message.contains(why), "{why}: {}", e.message);
            assert!(e.message.contains("\"t\""), "names the tool: {}", e.message);
        }
        let opt = json!({"name": "t", "arguments": {"path": "/data/a.txt", "n": true, "id": "a", "mode": true}});
        assert!(p.check(&call(&opt)).unwrap_err().message.contains("equals"));
    }

    #[test]
    fn argument_rules_are_typed() {
        let p = policy(
            r#"{tool_rules: {t: {args: {
            dry_run: {equals: false},
            n: {one_of: [1, 2], required: false},
            s: {one_of: ["1"], required: false},
            path: {prefix: "/data/", required: false},
            id: {regex: "[0-9]+", required: false}}}}}"#,
        );
        let check = |args: Value| p.check(&call(&json!({"name": "t", "arguments": args})));
        assert!(check(json!({"dry_run": false})).is_ok());
        assert!(check(json!({"dry_run": false, "n": 2.0, "s": "1", "path": "/data/x", "id": "42"})).is_ok());
        for (args, why) in [
            // "false" is truthy in JavaScript and Python: it is not `false`.
            (json!({"dry_run": "false"}), "equals false"),
            (json!({"dry_run": 0}), "equals false"),
            (json!({"dry_run": null}), "must be a string, number or boolean"),
            (json!({"dry_run": [false]}), "must be a string, number or boolean"),
            (json!({"dry_run": {"v": false}}), "must be a string, number or boolean"),
            (json!({"dry_run": false, "n": "1"}), "one_of"),
            (json!({"dry_run": false, "s": 1}), "one_of"),
            (json!({"dry_run": false, "path": ["/data/x"]}), "must be a string, number or boolean"),
            (json!({"dry_run": false, "id": 42}), "regex: the value must be a JSON string"),
            (json!({"dry_run": false, "path": "/data"}), "prefix"),
            // Literal prefix: no normalisation of the value.
            (json!({"dry_run": false, "path": "/data/../etc"}), "__ok__"),
        ] {
            match check(args.clone()) {
                Ok(()) => assert_eq!(why, "__ok__", "{args}"),
                Err(e) => assert!(e.message.contains(why), "{args}: {}", e.message),
            }
        }
    }

    #[test]
    fn a_case_variant_of_a_governed_argument_is_refused() {
        let p = policy(r#"{tool_rules: {t: {args: {path: {prefix: "/data/", required: false}}}}}"#);
        let check = |args: Value| p.check(&call(&json!({"name": "t", "arguments": args})));
        assert!(check(json!({})).is_ok());
        for variant in ["PATH", "Path", "pAth"] {
            let e = check(json!({ variant: "/etc/passwd" })).unwrap_err();
            assert!(e.message.contains("case variant"), "{}", e.message);
        }
    }

    #[test]
    fn names_and_params_members_must_be_exact() {
        for params in [
            json!({"Name": "echo"}),
            json!({"name": "echo", "Arguments": {}}),
            json!({"name": "echo ", "arguments": {}}),
            json!({"name": " echo"}),
            json!({"name": "echo\u{0}"}),
            json!({"name": "ec\nho"}),
            json!({"name": "\u{feff}echo"}),
        ] {
            assert!(Action::classify("tools/call", Some(&params)).is_err(), "{params}");
        }
        assert!(Action::classify("prompts/get", Some(&json!({"name": "p\t"}))).is_err());
        assert!(Action::classify("resources/read", Some(&json!({"URI": "file:///etc/passwd"}))).is_err());
        assert!(Action::classify("tools/call", Some(&json!({"name": "a b"}))).is_ok());
    }

    #[test]
    fn shapes_and_case_variants() {
        assert!(Action::classify("tools/call", Some(&json!([]))).is_err());
        assert!(Action::classify("tools/call", Some(&json!({"name": 3}))).is_err());
        assert!(Action::classify("tools/call", Some(&json!({"name": "x", "arguments": [1]}))).is_err());
        assert!(Action::classify("Tools/Call", Some(&json!({"name": "x"}))).is_err());
        assert_eq!(Action::classify("tools/list", None).unwrap(), Action::Other);
    }

    #[test]
    fn overrides_narrow_resources_and_prompts() {
        let server = policy("{allow_resources: [\"file:///data/\"], allow_prompts: [a, b]}");
        let client = policy("{allow_resources: [\"file:///data/public/\", \"file:///etc/\"], deny_prompts: [b]}");
        let eff = Effective { server: &server, client: Some(&client) };
        assert!(eff.check(&Action::ReadResource { uri: "file:///data/public/x" }).is_ok());
        assert!(eff.check(&Action::ReadResource { uri: "file:///data/private" }).is_err());
        assert!(eff.check(&Action::ReadResource { uri: "file:///etc/passwd" }).is_err(), "cannot widen");
        assert!(eff.check(&Action::GetPrompt { name: "a" }).is_ok());
        assert!(eff.check(&Action::GetPrompt { name: "b" }).is_err());
        // A client-only resource rule still refuses dot segments.
        let open = Policy::default();
        let eff = Effective { server: &open, client: Some(&client) };
        let e = eff.check(&Action::ReadResource { uri: "file:///data/public/../../etc/x" }).unwrap_err();
        assert_eq!(e.reason, DenyReason::ResourceUri);
        assert!(Policy::compile(&serde_yaml::from_str("{deny_resources: [\"file:///a/../b\"]}").unwrap()).is_err());
    }

    #[test]
    fn resources_and_prompts() {
        let p = policy(
            "{allow_resources: [\"file:///data/\"], deny_resources: [\"file:///data/secret\"], deny_prompts: [evil]}",
        );
        let r = |u: &str| Action::ReadResource { uri: Box::leak(u.to_string().into_boxed_str()) };
        assert!(p.check(&r("file:///data/a")).is_ok());
        assert!(p.check(&r("file:///data/secret/x")).is_err());
        assert!(p.check(&r("file:///etc/passwd")).is_err());
        assert!(p.check(&Action::GetPrompt { name: "evil" }).is_err());
        assert!(p.check(&Action::GetPrompt { name: "ok" }).is_ok());
    }
}
