//! What a message asks the backend to do, as far as policy is concerned:
//! the method and params read into an [`Action`], or refused as invalid.

use serde_json::{Map, Value};

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
