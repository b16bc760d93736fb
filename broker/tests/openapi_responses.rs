//! `proto-docs/openapi.yaml` cannot drift from what the broker answers: the spec is checked by
//! a real OpenAPI 3.1 validator (Python's `openapi-spec-validator`, which `.ci/run` installs),
//! and real responses of a running broker — each JSON success and every error code it can be
//! made to answer here — are validated against the spec's own schemas (OpenAPI 3.1 schemas are
//! JSON Schema 2020-12) with the `jsonschema` crate. The error codes no request here can
//! provoke (a full disk, an internal failure, …) are validated as the broker's own error
//! encoder writes them, and listed.

use std::collections::BTreeSet;
use std::sync::Arc;

use bus_broker::auth::Auth;
use bus_broker::auth::bearer_token::{TokenHash, generate};
use bus_broker::error::ErrorCode;
use bus_testkit::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const SPEC: &str = include_str!("../../proto-docs/openapi.yaml");

fn spec() -> Value {
    serde_yaml_ng::from_str(SPEC).expect("openapi.yaml parses")
}

/// Rewrites every `#/components/schemas/X` reference to `#/$defs/X`.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/components/schemas/")
            {
                *r = format!("#/$defs/{name}");
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The schemas of the spec, by JSON pointer, as self-contained JSON Schema 2020-12 documents.
struct Schemas {
    spec: Value,
    defs: Value,
}

impl Schemas {
    fn new() -> Schemas {
        let spec = spec();
        let mut defs = spec["components"]["schemas"].clone();
        rewrite_refs(&mut defs);
        Schemas { spec, defs }
    }

    /// The validator for the schema at `pointer` in the spec.
    fn at(&self, pointer: &str) -> jsonschema::Validator {
        let mut schema = self
            .spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no schema at {pointer}"))
            .clone();
        rewrite_refs(&mut schema);
        let doc = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": self.defs,
            "allOf": [schema],
        });
        jsonschema::draft202012::new(&doc)
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
    }

    /// The schema of `status`'s JSON body for `method path`.
    fn response(&self, method: &str, path: &str, status: u16) -> jsonschema::Validator {
        let p = path.replace('~', "~0").replace('/', "~1");
        self.at(&format!(
            "/paths/{p}/{}/responses/{status}/content/application~1json/schema",
            method.to_lowercase()
        ))
    }

    fn error(&self) -> jsonschema::Validator {
        self.at("/components/schemas/Error")
    }
}

fn check(v: &jsonschema::Validator, what: &str, body: &Value) {
    let errors: Vec<String> = v
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match openapi.yaml: {errors:?}\n{body}"
    );
}

#[test]
fn the_spec_is_valid_openapi_3_1() {
    let available = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but openapi-spec-validator is missing: .ci/run installs it with pip"
        );
        eprintln!("skipped: needs `pip install openapi-spec-validator`");
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto-docs/openapi.yaml");
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", path])
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi.yaml is not valid OpenAPI:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(spec()["openapi"], "3.1.0");
}

/// A broker with auth: `admin` may do everything; `reader` may only subscribe to `user.>`.
async fn server() -> (TestServer, String, String) {
    let admin = generate().unwrap();
    let reader = generate().unwrap();
    let yaml = format!(
        r#"
principals:
  - name: admin
    tokens: ["{}"]
    permissions: {{admin: true}}
  - name: reader
    tokens: ["{}"]
    permissions: {{subscribe: {{allow: ["user.>"]}}}}
"#,
        TokenHash::of(&admin).to_stored(),
        TokenHash::of(&reader).to_stored()
    );
    let auth = Arc::new(Auth::from_yaml(&yaml).expect("auth file"));
    let s = TestServer::builder()
        .engine(Engine::Memory)
        .config(move |c| {
            c.auth = Some(auth.clone());
            c.max_namespaces = 4;
        })
        .start()
        .await;
    (s, admin, reader)
}

#[tokio::test]
async fn real_successes_match_their_schemas() {
    let schemas = Schemas::new();
    let (s, admin, _) = server().await;
    let bearer = format!("Bearer {admin}");
    let auth = [("authorization", bearer.as_str())];
    let call = |method: Method, path: String, body: &'static str| {
        let s = &s;
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        async move { s.request(method, &path, &headers, body).await }
    };

    let r = call(Method::POST, "/v1/events/user.created".into(), r#"{"n":1}"#).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    check(
        &schemas.response("POST", "/v1/events/{subject}", 201),
        "a receipt",
        &r.json(),
    );
    let r = s
        .request(
            Method::POST,
            "/v1/events/user.created",
            &[("authorization", bearer.as_str()), ("bus-msg-id", "m-1")],
            "x",
        )
        .await;
    let r2 = s
        .request(
            Method::POST,
            "/v1/events/user.created",
            &[("authorization", bearer.as_str()), ("bus-msg-id", "m-1")],
            "x",
        )
        .await;
    assert_eq!((r.status, r2.status), (StatusCode::CREATED, StatusCode::OK));
    check(
        &schemas.response("POST", "/v1/events/{subject}", 200),
        "a duplicate's receipt",
        &r2.json(),
    );
    let r = call(
        Method::POST,
        "/v1/events/user.created?confirm=1&timeout=1ms".into(),
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    check(
        &schemas.response("POST", "/v1/events/{subject}", 202),
        "an unconfirmed receipt",
        &r.json(),
    );

    let r = call(
        Method::POST,
        "/v1/events".into(),
        r#"[{"subject":"user.a","payload":"x"},{"subject":"user.b","payload":{"k":[1]},"headers":{"h":"v"}}]"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    check(
        &schemas.response("POST", "/v1/events", 201),
        "batch receipts",
        &r.json(),
    );

    let r = call(
        Method::GET,
        "/v1/events?pattern=user.%3E&from=oldest".into(),
        "",
    )
    .await;
    check(
        &schemas.response("GET", "/v1/events", 200),
        "a pull page",
        &r.json(),
    );
    assert!(r.json()["events"].as_array().unwrap().len() >= 4);

    // A durable consumer, made by attaching, with one delivery pending.
    let mut st = s
        .stream(
            "pattern=user.%3E&from=oldest&durable=workers&ack=manual",
            &auth,
        )
        .await;
    st.expect_subscribed().await;
    let first = st.expect_event().await.json();
    check(
        &schemas.at("/components/schemas/Event"),
        "a manual-ack delivery",
        &first,
    );
    let id = first["id"].as_str().unwrap().to_owned();

    for (path, route) in [
        ("/v1/namespaces", "/v1/namespaces"),
        ("/v1/namespaces/user", "/v1/namespaces/{name}"),
        ("/v1/subscriptions", "/v1/subscriptions"),
        ("/v1/consumers", "/v1/consumers"),
        ("/v1/consumers/workers", "/v1/consumers/{name}"),
        ("/v1/whoami", "/v1/whoami"),
        ("/healthz", "/healthz"),
    ] {
        let r = call(Method::GET, path.into(), "").await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        check(&schemas.response("GET", route, 200), path, &r.json());
    }
    let r = call(
        Method::POST,
        format!("/v1/consumers/workers/events/{id}/ack"),
        "",
    )
    .await;
    check(
        &schemas.response("POST", "/v1/consumers/{name}/events/{id}/{op}", 200),
        "an ack",
        &r.json(),
    );
    let r = s
        .request(
            Method::POST,
            "/v1/consumers/workers/acks",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            format!(r#"[{{"id":"{id}","op":"ack"}}]"#),
        )
        .await;
    check(
        &schemas.response("POST", "/v1/consumers/{name}/acks", 200),
        "batch acks",
        &r.json(),
    );
    let r = s
        .request(
            Method::PATCH,
            "/v1/consumers/workers",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            r#"{"max_in_flight":5}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    check(
        &schemas.response("PATCH", "/v1/consumers/{name}", 200),
        "a changed consumer",
        &r.json(),
    );
    let r = call(
        Method::POST,
        "/v1/consumers/workers/seek?to=oldest".into(),
        "",
    )
    .await;
    check(
        &schemas.response("POST", "/v1/consumers/{name}/seek", 200),
        "a moved consumer",
        &r.json(),
    );
    drop(st);
    let r = call(Method::POST, "/v1/session".into(), "").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    check(
        &schemas.response("POST", "/v1/session", 201),
        "a session",
        &r.json(),
    );
    let r = call(Method::DELETE, "/v1/consumers/workers".into(), "").await;
    check(
        &schemas.response("DELETE", "/v1/consumers/{name}", 200),
        "a deletion",
        &r.json(),
    );
}

/// A request that provokes one error: method, path, extra headers, body.
type Case<'a> = (Method, String, Vec<(&'a str, &'a str)>, String);

#[tokio::test]
async fn real_errors_match_the_error_schema_and_every_code_is_covered() {
    let schemas = Schemas::new();
    let error = schemas.error();
    let (s, admin, reader) = server().await;
    let admin = format!("Bearer {admin}");
    let reader = format!("Bearer {reader}");
    let as_admin = [("authorization", admin.as_str())];

    // (method, path, extra headers, body): each provokes one code.
    let long = format!("/v1/events?pattern=user.%3E&x={}", "a".repeat(40_000));
    let cases: Vec<Case> = vec![
        (Method::POST, "/v1/events/a..b".into(), vec![], "x".into()),
        (Method::POST, "/v1/events/user.*".into(), vec![], "x".into()),
        (
            Method::GET,
            "/v1/events?pattern=a..b".into(),
            vec![],
            String::new(),
        ),
        (
            Method::GET,
            "/v1/events?pattern=user.%3E&from=nonsense!".into(),
            vec![],
            String::new(),
        ),
        (
            Method::POST,
            "/v1/events".into(),
            vec![("content-type", "application/json")],
            "[1".into(),
        ),
        (
            Method::POST,
            "/v1/events/user.a".into(),
            vec![("bus-header-", "x")],
            "x".into(),
        ),
        (
            Method::GET,
            "/v1/events?pattern=user.%3E&limit=0".into(),
            vec![],
            String::new(),
        ),
        (
            Method::GET,
            "/v1/events?pattern=user.%3E&bogus=1".into(),
            vec![],
            String::new(),
        ),
        (
            Method::POST,
            "/v1/events/_inbox.x".into(),
            vec![],
            "x".into(),
        ),
        (
            Method::GET,
            "/v1/namespaces/nothing".into(),
            vec![],
            String::new(),
        ),
        (
            Method::GET,
            "/v1/events?pattern=user.%3E&from=user-99-00000000".into(),
            vec![],
            String::new(),
        ),
        (Method::GET, "/v1/nowhere".into(), vec![], String::new()),
        (
            Method::GET,
            "/v1/consumers/nobody".into(),
            vec![],
            String::new(),
        ),
        (Method::PUT, "/v1/events".into(), vec![], String::new()),
        (
            Method::POST,
            "/v1/requests/rpc.nobody".into(),
            vec![],
            "x".into(),
        ),
        (
            Method::POST,
            "/v1/events/_inbox.0123456789abcdef0123456789abcdef".into(),
            vec![],
            "x".into(),
        ),
        (Method::GET, long, vec![], String::new()),
        (
            Method::POST,
            "/v1/events/user.a".into(),
            vec![("origin", "http://evil.example")],
            "x".into(),
        ),
        (
            Method::POST,
            "/v1/events/user.a".into(),
            vec![("authorization", reader.as_str())],
            "x".into(),
        ),
        (
            Method::GET,
            "/v1/whoami".into(),
            vec![("authorization", "Bearer bus_wrong")],
            String::new(),
        ),
    ];
    let mut seen = BTreeSet::new();
    for (method, path, headers, body) in cases {
        let mut h: Vec<(&str, &str)> = headers.clone();
        if !h.iter().any(|(k, _)| *k == "authorization") {
            h.extend(as_admin);
        }
        let r = s.request(method.clone(), &path, &h, body).await;
        assert!(r.status.as_u16() >= 400, "{method} {path}: {}", r.status);
        let v = r.json();
        check(&error, &format!("{method} {path} ({})", r.status), &v);
        seen.insert(v["error"]["code"].as_str().unwrap().to_owned());
    }
    // Namespaces up to the limit, then one more.
    for ns in ["n1", "n2", "n3", "n4", "n5"] {
        let r = s
            .request(Method::POST, &format!("/v1/events/{ns}.a"), &as_admin, "x")
            .await;
        if r.status.as_u16() >= 400 {
            check(&error, "namespace limit", &r.json());
            seen.insert(r.json()["error"]["code"].as_str().unwrap().to_owned());
        }
    }
    // The rest, as the broker's own encoder writes them (the body every handler answers).
    let mut encoded_only = Vec::new();
    for code in ErrorCode::ALL {
        // The type every error response serialises (`impl IntoResponse for Error`).
        let body = serde_json::to_value(bus_proto::error::ErrorBody::new(*code, "why"))
            .expect("an error body is JSON");
        check(&error, code.as_str(), &body);
        if !seen.contains(code.as_str()) {
            encoded_only.push(code.as_str());
        }
    }
    eprintln!(
        "validated from real responses: {seen:?}; through the encoder only: {encoded_only:?}"
    );
    assert!(seen.len() >= 15, "only {seen:?} provoked");
}
