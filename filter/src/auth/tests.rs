//! Every verification rule, with real RS256 keys (test-only keys in
//! tests/data) and tokens minted here.

use super::jwt::{self, Rules, TokenError};
use super::*;
use crate::config::{Config, Mode};
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

const NOW: u64 = 1_800_000_000;
const RESOURCE: &str = "https://gw.example.com/mcp";
const ISSUER: &str = "https://auth.example.com";

fn key_a() -> RS256KeyPair {
    RS256KeyPair::from_pem(include_str!("../../tests/data/test-rsa-a.pem")).unwrap().with_key_id("key-a")
}
fn key_b() -> RS256KeyPair {
    RS256KeyPair::from_pem(include_str!("../../tests/data/test-rsa-b.pem")).unwrap().with_key_id("key-b")
}

fn jwk(kp: &RS256KeyPair, kid: Option<&str>) -> Value {
    let c = kp.public_key().to_components();
    let mut k = json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "n": b64::encode(&c.n), "e": b64::encode(&c.e) });
    if let Some(kid) = kid {
        k["kid"] = json!(kid);
    }
    k
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": ISSUER, "sub": "alice", "aud": format!("{RESOURCE}/demo"),
        "iat": NOW - 10, "exp": NOW + 3600, "scope": "mcp:read mcp:write"
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn mint(kp: &RS256KeyPair, c: Value) -> String {
    let c: JWTClaims<Map<String, Value>> = serde_json::from_value(c).unwrap();
    kp.sign(c).unwrap()
}

fn raw_token(header: Value, payload: Value, sig: &str) -> String {
    format!("{}.{}.{sig}", b64::encode(header.to_string().as_bytes()), b64::encode(payload.to_string().as_bytes()))
}

fn rules() -> Rules {
    Rules { issuer: Some(ISSUER.into()), identity_claim: "sub".into() }
}

fn keyset() -> jwks::KeySet {
    jwks::KeySet::parse(&jwks(&[jwk(&key_a(), Some("key-a"))])).unwrap()
}

fn verify(token: &str) -> Result<jwt::VerifiedToken, TokenError> {
    jwt::verify(token, Some(&keyset()), &rules(), NOW)
}

#[test]
fn a_valid_token_verifies() {
    let v = verify(&mint(&key_a(), claims(json!({})))).unwrap();
    assert_eq!(v.identity, "alice");
    assert_eq!(v.audiences, [format!("{RESOURCE}/demo")]);
    assert!(v.scopes.contains("mcp:read") && v.scopes.contains("mcp:write"));
    assert_eq!(v.expires_at, NOW + 3600);
}

#[test]
fn algorithms_other_than_rs256_are_refused_before_crypto() {
    let payload = claims(json!({}));
    let none = raw_token(json!({"alg": "none", "typ": "JWT"}), payload.clone(), "");
    assert_eq!(verify(&none).unwrap_err(), TokenError::Algorithm("none".into()));
    let none_upper = raw_token(json!({"alg": "None"}), payload.clone(), "");
    assert!(matches!(verify(&none_upper).unwrap_err(), TokenError::Algorithm(_)));
    // HS256 "signed" with the RSA public key (the classic key-confusion attack).
    let der = key_a().public_key().to_der().unwrap();
    let hs = HS256Key::from_bytes(&der).with_key_id("key-a");
    let c: JWTClaims<Map<String, Value>> = serde_json::from_value(payload.clone()).unwrap();
    let hs_token = hs.authenticate(c).unwrap();
    assert_eq!(verify(&hs_token).unwrap_err(), TokenError::Algorithm("HS256".into()));
    for alg in ["RS384", "RS512", "PS256", "ES256", "rs256"] {
        let t = raw_token(json!({"alg": alg, "kid": "key-a"}), payload.clone(), "AAAA");
        assert!(matches!(verify(&t).unwrap_err(), TokenError::Algorithm(_)), "{alg}");
    }
    // Refused even with no keys loaded: nothing about the key set is needed.
    assert!(matches!(jwt::verify(&none, None, &rules(), NOW).unwrap_err(), TokenError::Algorithm(_)));
}

#[test]
fn header_tricks_are_refused() {
    let p = claims(json!({}));
    let dup =
        format!("{}.{}.AAAA", b64::encode(br#"{"alg":"RS256","alg":"none"}"#), b64::encode(p.to_string().as_bytes()));
    assert!(matches!(verify(&dup).unwrap_err(), TokenError::Malformed(_)), "duplicate alg");
    let crit = raw_token(json!({"alg": "RS256", "kid": "key-a", "crit": ["exp"]}), p.clone(), "AAAA");
    assert!(matches!(verify(&crit).unwrap_err(), TokenError::Malformed(_)));
    let typ = raw_token(json!({"alg": "RS256", "kid": "key-a", "typ": "JWE"}), p.clone(), "AAAA");
    assert!(matches!(verify(&typ).unwrap_err(), TokenError::Malformed(_)));
    for bad in ["", "a.b", "a.b.c.d", "!!.e30.x", &"x".repeat(jwt::MAX_TOKEN_BYTES + 1)] {
        assert!(matches!(verify(bad).unwrap_err(), TokenError::Malformed(_)), "{bad:.20}");
    }
}

#[test]
fn tampered_signature_and_payload_fail() {
    let t = mint(&key_a(), claims(json!({})));
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut sig_bytes = b64::decode(sig).unwrap();
    sig_bytes[10] ^= 1;
    let bad_sig = format!("{head}.{}", b64::encode(&sig_bytes));
    assert_eq!(verify(&bad_sig).unwrap_err(), TokenError::Signature);
    // The payload swapped for another identity, signature kept.
    let parts: Vec<&str> = t.split('.').collect();
    let evil = b64::encode(claims(json!({"sub": "admin"})).to_string().as_bytes());
    let swapped = format!("{}.{evil}.{}", parts[0], parts[2]);
    assert_eq!(verify(&swapped).unwrap_err(), TokenError::Signature);
    // Signed by a key the server does not publish under the same kid.
    let forged = mint(&key_b().with_key_id("key-a"), claims(json!({})));
    assert_eq!(verify(&forged).unwrap_err(), TokenError::Signature);
}

#[test]
fn time_rules_with_leeway() {
    let expired = mint(&key_a(), claims(json!({"exp": NOW - jwt::LEEWAY_SECS - 1})));
    assert_eq!(verify(&expired).unwrap_err(), TokenError::Expired);
    let within_leeway = mint(&key_a(), claims(json!({"exp": NOW - 5})));
    assert!(verify(&within_leeway).is_ok());
    let future = mint(&key_a(), claims(json!({"nbf": NOW + jwt::LEEWAY_SECS + 60})));
    assert_eq!(verify(&future).unwrap_err(), TokenError::NotYetValid);
    let no_exp = mint(&key_a(), claims(json!({"exp": null})));
    assert_eq!(verify(&no_exp).unwrap_err(), TokenError::MissingExpiry);
    let iat_future = mint(&key_a(), claims(json!({"iat": NOW + 3600})));
    assert_eq!(verify(&iat_future).unwrap_err(), TokenError::IssuedInFuture);
    // A verified token is re-checked against the clock on every use.
    let v = verify(&mint(&key_a(), claims(json!({"exp": NOW + 10})))).unwrap();
    let aud = format!("{RESOURCE}/demo");
    assert!(v.check(NOW, &[&aud], &[]).is_ok());
    assert_eq!(v.check(NOW + 10 + jwt::LEEWAY_SECS + 1, &[&aud], &[]).unwrap_err(), TokenError::Expired);
}

#[test]
fn issuer_identity_and_keys() {
    let wrong_iss = mint(&key_a(), claims(json!({"iss": "https://evil.example.com"})));
    assert_eq!(verify(&wrong_iss).unwrap_err(), TokenError::Issuer);
    let no_iss = mint(&key_a(), claims(json!({"iss": null})));
    assert_eq!(verify(&no_iss).unwrap_err(), TokenError::Issuer);
    let no_sub = mint(&key_a(), claims(json!({"sub": null})));
    assert_eq!(verify(&no_sub).unwrap_err(), TokenError::Identity("sub".into()));
    let email_rules = Rules { issuer: None, identity_claim: "email".into() };
    let t = mint(&key_a(), claims(json!({"email": "bob@example.com", "iss": "anyone"})));
    assert_eq!(jwt::verify(&t, Some(&keyset()), &email_rules, NOW).unwrap().identity, "bob@example.com");
    let unknown_kid = mint(&key_b(), claims(json!({})));
    assert_eq!(verify(&unknown_kid).unwrap_err(), TokenError::UnknownKid("key-b".into()));
    assert_eq!(jwt::verify(&unknown_kid, None, &rules(), NOW).unwrap_err(), TokenError::NoKeys);
    // No kid: fine with one key, refused with several.
    let no_kid = RS256KeyPair::from_pem(include_str!("../../tests/data/test-rsa-a.pem")).unwrap();
    let t = mint(&no_kid, claims(json!({})));
    assert!(verify(&t).is_ok());
    let two = jwks::KeySet::parse(&jwks(&[jwk(&key_a(), Some("key-a")), jwk(&key_b(), Some("key-b"))])).unwrap();
    assert_eq!(jwt::verify(&t, Some(&two), &rules(), NOW).unwrap_err(), TokenError::AmbiguousKey);
}

#[test]
fn audience_binding_and_scopes() {
    let demo = format!("{RESOURCE}/demo");
    let other = format!("{RESOURCE}/other");
    let v = verify(&mint(&key_a(), claims(json!({})))).unwrap();
    assert!(v.check(NOW, &[&demo], &[]).is_ok());
    assert!(matches!(v.check(NOW, &[&other], &[]).unwrap_err(), TokenError::Audience { .. }));
    assert!(matches!(v.check(NOW, &[RESOURCE], &[]).unwrap_err(), TokenError::Audience { .. }));
    // A prefix of the resource is not the resource.
    let v = verify(&mint(&key_a(), claims(json!({"aud": format!("{RESOURCE}/dem")})))).unwrap();
    assert!(v.check(NOW, &[&demo], &[]).is_err());
    let v = verify(&mint(&key_a(), claims(json!({"aud": [other.clone(), demo.clone()]})))).unwrap();
    assert!(v.check(NOW, &[&demo], &[]).is_ok());
    assert!(v.check(NOW, &[&demo], &["mcp:read".into()]).is_ok());
    assert_eq!(
        v.check(NOW, &[&demo], &["mcp:admin".into()]).unwrap_err(),
        TokenError::Scope { required: vec!["mcp:admin".into()] }
    );
    let scp = verify(&mint(&key_a(), claims(json!({"scope": null, "scp": ["a", "b"]})))).unwrap();
    assert!(scp.check_scopes(&["a".into(), "b".into()]).is_ok());
}

#[test]
fn jwks_parsing_skips_unusable_keys() {
    let small = json!({"kty": "RSA", "kid": "small", "n": b64::encode(&[0xc5; 128]), "e": "AQAB"});
    let ec = json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"});
    let enc = {
        let mut k = jwk(&key_b(), Some("enc"));
        k["use"] = json!("enc");
        k
    };
    let set = jwks::KeySet::parse(&jwks(&[small, ec, enc, jwk(&key_a(), Some("key-a"))])).unwrap();
    assert_eq!(set.len(), 1);
    assert!(jwks::KeySet::parse(b"{\"keys\":[]}").is_err());
    assert!(jwks::KeySet::parse(b"not json").is_err());
    assert!(jwks::KeySet::parse(b"{}").is_err());
}

// ---- the Auth front: static credentials and OAuth through RequestHead ----

fn head(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), "/mcp/demo".to_string()),
        (":scheme".to_string(), "http".to_string()),
        (":authority".to_string(), "gw.local:8080".to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn auth(yaml_auth: &str) -> Auth {
    let text = format!("servers:\n  - name: demo\n  - name: other\n{yaml_auth}");
    let c = Config::from_yaml(&text, Mode::Plugin).unwrap();
    Auth::new(&c.auth, &["demo".into(), "other".into()]).unwrap()
}

fn status(c: &Check) -> u16 {
    match c {
        Check::Open | Check::Allowed(_) => 200,
        Check::Refused(r) | Check::AwaitKeys(r) => r.reply.status,
    }
}

fn www(c: &Check) -> String {
    match c {
        Check::Refused(r) => r.reply.headers.iter().find(|(k, _)| k == "www-authenticate").unwrap().1.clone(),
        _ => String::new(),
    }
}

#[test]
fn bearer_tokens_and_named_clients() {
    let sealed = secret::seal("ci-secret").unwrap();
    let a = auth(&format!(
        "auth:\n  enabled: true\n  type: bearer\n  token: anon-secret\n  clients:\n    - {{ name: ci-bot, token: \"{sealed}\" }}\n"
    ));
    let id = |h: &[(&str, &str)]| match a.check(&RequestHead { headers: &head(h) }, Some("demo"), NOW) {
        Check::Allowed(p) => Some(p.identity),
        _ => None,
    };
    assert_eq!(id(&[("authorization", "Bearer anon-secret")]).as_deref(), Some("default"));
    assert_eq!(id(&[("Authorization", "bearer   ci-secret")]).as_deref(), Some("ci-bot"));
    for bad in ["Bearer ci-secre", "Bearer ci-secretx", "Bearer", "Basic ci-secret", "ci-secret", "Bearer ci secret"] {
        assert_eq!(id(&[("authorization", bad)]), None, "{bad:?}");
    }
    assert_eq!(id(&[("x-api-key", "ci-secret")]), None, "wrong header");
    assert_eq!(id(&[("authorization", "Bearer ci-secret"), ("authorization", "Bearer ci-secret")]), None);
    let missing = a.check(&RequestHead { headers: &head(&[]) }, Some("demo"), NOW);
    assert_eq!(status(&missing), 401);
    assert_eq!(www(&missing), "Bearer realm=\"mcpx\"");
    let Check::Refused(r) = missing else { panic!() };
    let body: Value = serde_json::from_str(&r.reply.body).unwrap();
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(a.credential_header(), Some("authorization"));
}

#[test]
fn api_keys_use_their_header() {
    let a = auth("auth:\n  enabled: true\n  type: api_key\n  header: X-Team-Key\n  token: k-123\n");
    let check = |h: &[(&str, &str)]| status(&a.check(&RequestHead { headers: &head(h) }, Some("demo"), NOW));
    assert_eq!(check(&[("x-team-key", "k-123")]), 200);
    assert_eq!(check(&[("X-Team-Key", "k-12")]), 401);
    assert_eq!(check(&[("authorization", "Bearer k-123")]), 401);
    assert_eq!(check(&[("x-api-key", "k-123")]), 401);
    assert_eq!(a.credential_header(), Some("x-team-key"));
    assert!(www(&a.check(&RequestHead { headers: &head(&[]) }, Some("demo"), NOW)).contains("x-team-key"));
}

#[test]
fn unexpanded_env_reference_is_a_config_error() {
    let text = "servers:\n  - name: demo\nauth:\n  enabled: true\n  token: \"${MCPX_TOKEN}\"\n";
    // A plugin configuration is refused at validation (what `mcpx check --plugin` runs)...
    let e = Config::from_yaml(text, Mode::Plugin).unwrap_err();
    assert_eq!(e.key, "auth.token");
    // ...and the filter's own compile step refuses it too, should one get through.
    let gateway_text = text.replace("name: demo\n", "name: demo\n    url: http://127.0.0.1:3001\n");
    let c = Config::from_yaml(&gateway_text, Mode::Gateway).unwrap();
    let e = Auth::new(&c.auth, &["demo".into()]).unwrap_err();
    assert_eq!(e.key, "auth.token");
}

const OAUTH: &str = "auth:\n  enabled: true\n  type: oauth\n  oauth:\n    resource: https://gw.example.com/mcp\n    jwks_uri: https://auth.example.com/jwks.json\n    issuer: https://auth.example.com\n    scopes: { demo: [mcp:read], demo/dangerous_delete: [mcp:admin] }\n";

fn oauth_auth() -> Auth {
    let a = auth(OAUTH);
    let o = a.oauth().unwrap();
    assert!(o.fetch_wanted(NOW));
    o.install_jwks(&jwks(&[jwk(&key_a(), Some("key-a"))]), NOW).unwrap();
    assert!(!o.fetch_wanted(NOW));
    a
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn oauth_per_server_audience_and_challenges() {
    let a = oauth_auth();
    let t = mint(&key_a(), claims(json!({})));
    let h = head(&[("authorization", &bearer(&t))]);
    let rh = RequestHead { headers: &h };
    let Check::Allowed(p) = a.check(&rh, Some("demo"), NOW) else { panic!("valid token refused") };
    assert_eq!(p.identity, "alice");
    let grant = p.grant.unwrap();
    assert_eq!(grant.metadata_url, "http://gw.local:8080/.well-known/oauth-protected-resource/mcp/demo");
    // The same token at another server of this gateway is refused.
    let at_other = a.check(&rh, Some("other"), NOW);
    assert_eq!(status(&at_other), 401);
    assert!(www(&at_other).contains("error=\"invalid_token\""), "{}", www(&at_other));
    assert!(www(&at_other).contains("/.well-known/oauth-protected-resource/mcp/other"));
    // Gateway endpoints accept a token for any of its servers.
    assert_eq!(status(&a.check(&rh, None, NOW)), 200);
    // A gateway-wide audience only when configured.
    let gw_token = mint(&key_a(), claims(json!({"aud": RESOURCE})));
    let h2 = head(&[("authorization", &bearer(&gw_token))]);
    assert_eq!(status(&a.check(&RequestHead { headers: &h2 }, Some("demo"), NOW)), 401);
    let accepting = auth(&format!("{OAUTH}    accept_gateway_audience: true\n"));
    accepting.oauth().unwrap().install_jwks(&jwks(&[jwk(&key_a(), Some("key-a"))]), NOW).unwrap();
    assert_eq!(status(&accepting.check(&RequestHead { headers: &h2 }, Some("demo"), NOW)), 200);
    // Missing token: the challenge points at the per-server metadata.
    let none = a.check(&RequestHead { headers: &head(&[]) }, Some("demo"), NOW);
    assert_eq!(status(&none), 401);
    assert_eq!(
        www(&none),
        "Bearer resource_metadata=\"http://gw.local:8080/.well-known/oauth-protected-resource/mcp/demo\", scope=\"mcp:read\""
    );
}

#[test]
fn oauth_scopes_step_up() {
    let a = oauth_auth();
    let t = mint(&key_a(), claims(json!({"scope": "other"})));
    let h = head(&[("authorization", &bearer(&t))]);
    let c = a.check(&RequestHead { headers: &h }, Some("demo"), NOW);
    assert_eq!(status(&c), 403);
    assert!(www(&c).starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp:read\""), "{}", www(&c));
    let t = mint(&key_a(), claims(json!({"scope": "mcp:read"})));
    let h = head(&[("authorization", &bearer(&t))]);
    let Check::Allowed(p) = a.check(&RequestHead { headers: &h }, Some("demo"), NOW) else { panic!() };
    let grant = p.grant.unwrap();
    let o = a.oauth().unwrap();
    assert!(o.check_tool("demo", "echo", &grant, &ReplyTo::Http).is_none());
    let r = o.check_tool("demo", "dangerous_delete", &grant, &ReplyTo::JsonRpc(json!(7))).unwrap();
    assert_eq!(r.reply.status, 403);
    let www = &r.reply.headers[0].1;
    assert!(www.contains("scope=\"mcp:read mcp:admin\""), "{www}");
    let body: Value = serde_json::from_str(&r.reply.body).unwrap();
    assert_eq!(body["id"], 7);
}

#[test]
fn oauth_without_keys_fails_closed_and_unknown_kid_asks_for_refetch() {
    let a = auth(OAUTH);
    let t = mint(&key_a(), claims(json!({})));
    let h = head(&[("authorization", &bearer(&t))]);
    let c = a.check(&RequestHead { headers: &h }, Some("demo"), NOW);
    assert_eq!(status(&c), 503);
    let a = oauth_auth();
    let o = a.oauth().unwrap();
    let rotated = mint(&key_b(), claims(json!({})));
    let h = head(&[("authorization", &bearer(&rotated))]);
    // Keys fetched just now: no re-fetch yet, refused at once.
    let c = a.check(&RequestHead { headers: &h }, Some("demo"), NOW);
    assert!(matches!(&c, Check::Refused(r) if r.reply.status == 401), "{c:?}");
    assert!(o.fetch_wanted(NOW), "unknown kid asks for a refetch");
    // Later, a re-fetch is allowed: the request waits for it (401 if it ends).
    let later = NOW + oauth::REFETCH_FLOOR_SECS;
    let c = a.check(&RequestHead { headers: &h }, Some("demo"), later);
    assert!(matches!(&c, Check::AwaitKeys(r) if r.reply.status == 401), "{c:?}");
    o.install_jwks(&jwks(&[jwk(&key_a(), Some("key-a")), jwk(&key_b(), Some("key-b"))]), NOW).unwrap();
    assert_eq!(status(&a.check(&RequestHead { headers: &h }, Some("demo"), NOW)), 200);
    // A cached token still expires.
    assert_eq!(status(&a.check(&RequestHead { headers: &h }, Some("demo"), NOW + 7200)), 401);
}

#[test]
fn metadata_documents() {
    let a = oauth_auth();
    let get = |path: &str| {
        let h = vec![(":method".to_string(), "GET".to_string()), (":path".to_string(), path.to_string())];
        a.metadata(&RequestHead { headers: &h })
    };
    let r = get("/.well-known/oauth-protected-resource/mcp/demo").unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["resource"], "https://gw.example.com/mcp/demo");
    assert_eq!(v["authorization_servers"], json!([ISSUER]));
    assert_eq!(v["bearer_methods_supported"], json!(["header"]));
    assert_eq!(v["scopes_supported"], json!(["mcp:admin", "mcp:read"]));
    let v: Value = serde_json::from_str(&get("/.well-known/oauth-protected-resource").unwrap().body).unwrap();
    assert_eq!(v["resource"], RESOURCE);
    assert!(get("/.well-known/oauth-protected-resourcex").is_none());
    assert!(get("/mcp/demo").is_none());
    assert!(auth("").metadata(&RequestHead { headers: &[] }).is_none());
}

#[test]
fn base_url_prefers_public_url_and_sanitises_the_host() {
    let a = auth(&format!("{OAUTH}    public_url: https://public.example.com/\n"));
    let h = head(&[]);
    assert_eq!(
        a.oauth().unwrap().metadata_url(&RequestHead { headers: &h }, Some("demo")),
        "https://public.example.com/.well-known/oauth-protected-resource/mcp/demo"
    );
    let a = auth(OAUTH);
    let mut h = head(&[("x-forwarded-proto", "https")]);
    let o = a.oauth().unwrap();
    assert!(o.metadata_url(&RequestHead { headers: &h }, None).starts_with("https://gw.local:8080/"));
    h[3].1 = "evil\"host".into();
    assert!(o.metadata_url(&RequestHead { headers: &h }, None).starts_with("https://gw.example.com/"));
}

#[test]
fn render_seals_static_credentials() {
    let c = Config::from_yaml(
        "servers:\n  - name: demo\n    url: http://127.0.0.1:1\nauth:\n  enabled: true\n  token: \"${T}\"\n  clients:\n    - { name: bot, token: plain-bot-secret }\n",
        Mode::Gateway,
    )
    .unwrap();
    let sealed = seal_config(&c, |k| (k == "T").then(|| "from-env-secret".to_string())).unwrap();
    let text = serde_json::to_string(&sealed).unwrap();
    assert!(!text.contains("from-env-secret") && !text.contains("plain-bot-secret"), "{text}");
    let a = Auth::new(&sealed.auth, &["demo".into()]).unwrap();
    let h = head(&[("authorization", "Bearer from-env-secret")]);
    assert_eq!(status(&a.check(&RequestHead { headers: &h }, Some("demo"), NOW)), 200);
    let h = head(&[("authorization", "Bearer plain-bot-secret")]);
    assert_eq!(status(&a.check(&RequestHead { headers: &h }, Some("demo"), NOW)), 200);
    let e = seal_config(&c, |_| None).unwrap_err();
    assert_eq!(e.key, "auth.token");
    assert!(e.message.contains("T is not set"), "{e}");
}

#[test]
fn jwks_source_and_cluster() {
    let o = oauth_auth();
    let src = &o.oauth().unwrap().jwks;
    assert_eq!(
        (src.cluster.as_str(), src.authority.as_str(), src.path.as_str()),
        ("mcpx_jwks", "auth.example.com", "/jwks.json")
    );
    let mesh = auth(&format!("{OAUTH}    jwks_cluster: \"outbound|443||auth.example.com\"\n"));
    assert_eq!(mesh.oauth().unwrap().jwks.cluster, "outbound|443||auth.example.com");
    let s = oauth::JwksSource::parse("http://127.0.0.1:8081/keys", "c").unwrap();
    assert_eq!((s.authority.as_str(), s.path.as_str()), ("127.0.0.1:8081", "/keys"));
}

#[test]
fn odd_signature_lengths_fail_without_panicking() {
    let t = mint(&key_a(), claims(json!({})));
    let (signed, _) = t.rsplit_once('.').unwrap();
    for len in [0usize, 1, 10, 255, 257, 600] {
        let forged = format!("{signed}.{}", b64::encode(&vec![0x41; len]));
        assert_eq!(verify(&forged).unwrap_err(), TokenError::Signature, "{len}");
    }
    let modulus_sized = format!("{signed}.{}", b64::encode(&[0xff; 256]));
    assert_eq!(verify(&modulus_sized).unwrap_err(), TokenError::Signature);
}

/// Signs an arbitrary payload (claims jwt-simple itself would not build).
fn mint_raw(kp: &RS256KeyPair, payload: Value) -> String {
    let head = json!({"alg": "RS256", "typ": "JWT", "kid": "key-a"});
    let signed =
        format!("{}.{}", b64::encode(head.to_string().as_bytes()), b64::encode(payload.to_string().as_bytes()));
    use rsa::pkcs8::DecodePrivateKey;
    use sha2::Digest;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&kp.to_pem().unwrap()).unwrap();
    let digest = sha2::Sha256::digest(signed.as_bytes());
    let sig = key.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest).unwrap();
    format!("{signed}.{}", b64::encode(&sig))
}

#[test]
fn registered_claims_keep_their_types() {
    // Well-typed variants verify: a list audience, a fractional NumericDate.
    let ok = verify(&mint_raw(
        &key_a(),
        claims(json!({"aud": ["x", format!("{RESOURCE}/demo")], "exp": (NOW + 60) as f64 + 0.5})),
    ));
    let v = ok.unwrap();
    assert_eq!(v.audiences.len(), 2);
    assert_eq!(v.expires_at, NOW + 60);
    // A registered claim of the wrong type makes the token malformed, even
    // with a valid signature: never read as absent.
    for bad in [
        json!({"sub": 7}),
        json!({"exp": "soon"}),
        json!({"exp": -1}),
        json!({"aud": 3}),
        json!({"iss": ["a"]}),
        json!({"nbf": true}),
    ] {
        let t = mint_raw(&key_a(), claims(bad.clone()));
        assert!(matches!(verify(&t).unwrap_err(), TokenError::Malformed(_)), "{bad}");
    }
}
