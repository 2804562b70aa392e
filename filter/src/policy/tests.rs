use super::*;
use serde_json::json;
use serde_json::Value;

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
