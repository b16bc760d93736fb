//! Credentials and permissions through HTTP (`--auth`): each rule allowed and refused
//! (publish, batch, stream, pull, request, reply, each consumer operation, admin, listings),
//! with static tokens and with JWTs of each algorithm, and the four attacks the issue names
//! (taking over another team's consumer, answering another's request, pre-empting another's
//! dedup ids, exhausting namespaces) refused.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bus_broker::auth::Auth;
use bus_broker::auth::bearer_token::{TokenHash, generate};
use bus_testkit::*;
use hyper::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The tokens of the principals of [`auth_yaml`].
struct Tokens {
    admin: String,
    orders: String,
    ops: String,
    intruder: String,
    rpc: String,
}

impl Tokens {
    fn new() -> Tokens {
        Tokens {
            admin: generate().unwrap(),
            orders: generate().unwrap(),
            ops: generate().unwrap(),
            intruder: generate().unwrap(),
            rpc: generate().unwrap(),
        }
    }
}

const HS_SECRET: &str = "an HS256 secret of more than thirty-two bytes";
const HS_SECRET_2: &str = "the rotated HS256 secret, also long enough!!";

fn stored(t: &str) -> String {
    TokenHash::of(t).to_stored()
}

/// The auth file: an admin; `orders`, a team with its namespace and consumers; `ops`, who
/// manages the team's consumers; `intruder`, another team; `rpc`, a service that sends
/// requests and answers them; and JWT keys (`extra_keys` appended under `keys:`).
fn auth_yaml(t: &Tokens, extra_keys: &str) -> String {
    format!(
        r#"
audience: bus
principals:
  - name: admin
    tokens: ["{admin}"]
    permissions: {{admin: true}}
  - name: orders
    tokens: ["{orders}"]
    permissions:
      publish: {{allow: ["orders.>", "orders2.>"], deny: ["orders.secret.>"]}}
      subscribe: {{allow: ["orders.>"]}}
      consumers: [{{names: ["orders-*"], rights: [attach, ack]}}]
      create_namespace: {{names: ["orders", "orders2"], quota: 1}}
  - name: ops
    tokens: ["{ops}"]
    permissions:
      subscribe: {{allow: ["orders.>"]}}
      consumers: [{{names: ["orders-*"], rights: [manage]}}]
      metrics: true
  - name: intruder
    tokens: ["{intruder}"]
    permissions:
      publish: {{allow: ["orders.>", "rpc.>", "junk.>"]}}
      subscribe: {{allow: ["public.>"]}}
  - name: rpc
    tokens: ["{rpc}"]
    permissions:
      publish: {{allow: ["rpc.>"]}}
      subscribe: {{allow: ["rpc.>"]}}
keys:
  - kid: hs-1
    alg: HS256
    secret: "{HS_SECRET}"
    grants:
      publish: {{allow: ["user.>"]}}
      subscribe: {{allow: ["user.>"]}}
{extra_keys}"#,
        admin = stored(&t.admin),
        orders = stored(&t.orders),
        ops = stored(&t.ops),
        intruder = stored(&t.intruder),
        rpc = stored(&t.rpc),
    )
}

/// A broker on the memory engine with `yaml` as its auth file; the `Auth` to replace it.
async fn server_with(yaml: &str, engine: Engine) -> (TestServer, Arc<Auth>) {
    let auth = Arc::new(Auth::from_yaml(yaml).expect("auth file"));
    let a = auth.clone();
    let s = TestServer::builder()
        .engine(engine)
        .config(move |c| c.auth = Some(a.clone()))
        .start()
        .await;
    (s, auth)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: impl Into<bytes::Bytes>,
) -> Resp {
    let auth = bearer(token);
    s.request(method, path, &[("authorization", &auth)], body)
        .await
}

async fn publish(s: &TestServer, token: &str, subject: &str, payload: &str) -> Resp {
    let path = format!("/v1/events/{}", enc(subject));
    let owned = payload.to_owned();
    call(s, Method::POST, &path, token, owned).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt(alg: Algorithm, kid: &str, key: &EncodingKey, claims: Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, &claims, key).expect("encode a JWT")
}

fn hs(kid: &str, secret: &str, claims: Value) -> String {
    jwt(
        Algorithm::HS256,
        kid,
        &EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

#[tokio::test]
async fn credentials_are_required_and_refusals_say_why() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    assert_eq!(
        s.get("/healthz").await.status,
        StatusCode::OK,
        "health needs no credential"
    );

    let r = s.get("/v1/namespaces").await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"bus\""));

    let r = call(
        &s,
        Method::GET,
        "/v1/namespaces",
        "bus_not-a-known-token-xxxxxxx",
        "",
    )
    .await;
    let msg = r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(msg.contains("not known"), "{msg}");
    let www = r.header("www-authenticate").unwrap();
    assert!(www.contains("error=\"invalid_token\""), "{www}");

    let r = s
        .get_with("/v1/namespaces", &[("authorization", "Basic YTpi")])
        .await;
    let msg = r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(msg.contains("Bearer"), "{msg}");

    let r = call(&s, Method::GET, "/v1/whoami", &t.orders, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let me = r.json();
    assert_eq!(
        (me["principal"].as_str(), me["credential"].as_str()),
        (Some("orders"), Some("token"))
    );
    assert_eq!(me["auth"], true);
    assert_eq!(
        me["grants"][0]["publish"]["allow"],
        json!(["orders.>", "orders2.>"])
    );
}

#[tokio::test]
async fn publishing_follows_allow_and_deny_and_a_batch_is_checked_whole() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    let r = publish(&s, &t.orders, "orders.created", "1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let msg = publish(&s, &t.orders, "billing.paid", "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        msg.contains("\"orders\"")
            && msg.contains("\"billing.paid\"")
            && msg.contains("publish allow"),
        "{msg}"
    );
    let msg = publish(&s, &t.orders, "orders.secret.key", "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("deny pattern \"orders.secret.>\""), "{msg}");

    let batch =
        r#"[{"subject":"orders.a","payload":"1"},{"subject":"orders.secret.b","payload":"2"}]"#;
    let msg = call(&s, Method::POST, "/v1/events", &t.orders, batch)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.starts_with("item 1:"), "{msg}");
    let ok = r#"[{"subject":"orders.a","payload":"1"},{"subject":"orders.b","payload":"2"}]"#;
    let r = call(&s, Method::POST, "/v1/events", &t.orders, ok).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let page = call(
        &s,
        Method::GET,
        "/v1/events?pattern=orders.%3E&from=oldest",
        &t.admin,
        "",
    )
    .await;
    let subjects: Vec<_> = page.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        subjects,
        ["orders.created", "orders.a", "orders.b"],
        "the refused batch stored nothing"
    );
}

#[tokio::test]
async fn streams_and_pulls_need_a_covering_subscribe_right() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    publish(&s, &t.orders, "orders.created", "1").await;
    let auth = bearer(&t.orders);
    let h = [("authorization", auth.as_str())];
    let mut st = s.stream("pattern=orders.%3E&from=oldest", &h).await;
    st.expect_subscribed().await;
    assert_eq!(st.expect_event().await.json()["payload"], "1");

    let st = s.stream("pattern=%3E&from=oldest", &h).await;
    assert_eq!(st.status, StatusCode::FORBIDDEN);
    let r = call(&s, Method::GET, "/v1/events?pattern=%3E", &t.orders, "").await;
    let msg = r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("covers"), "{msg}");
    let r = call(
        &s,
        Method::GET,
        "/v1/events?pattern=orders.*&from=oldest",
        &t.orders,
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &s,
        Method::GET,
        "/v1/events?pattern=orders.%3E",
        &t.intruder,
        "",
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
}

/// Attack: answering someone else's request before the real responder.
#[tokio::test]
async fn only_a_responder_that_could_receive_a_request_answers_it() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    assert_eq!(
        publish(&s, &t.admin, "rpc.setup", "").await.status,
        StatusCode::CREATED
    );
    let auth = bearer(&t.rpc);
    let mut responder = s
        .stream("pattern=rpc.users.get", &[("authorization", auth.as_str())])
        .await;
    responder.expect_subscribed().await;

    let caller = {
        let client = s.client.clone();
        let url = s.url("/v1/requests/rpc.users.get?timeout=30s");
        let auth = bearer(&t.rpc);
        tokio::spawn(async move {
            send(
                &client,
                Method::POST,
                &url,
                &[("authorization", &auth)],
                "who?".into(),
            )
            .await
        })
    };
    let request = responder.expect_event().await.json();
    let inbox = request["reply_to"].as_str().expect("reply_to").to_owned();
    let path = format!("/v1/events/{}", enc(&inbox));

    let msg = call(&s, Method::POST, &path, &t.intruder, "forged")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("could receive"), "{msg}");
    let r = call(&s, Method::POST, &path, &t.rpc, "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer = within("the reply", caller).await.unwrap();
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::OK, "alice")
    );

    let msg = call(&s, Method::POST, "/v1/requests/orders.x", &t.rpc, "")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("send a request to \"orders.x\""), "{msg}");
}

/// Attack: deleting, seeking, draining or taking over another team's durable consumer.
#[tokio::test]
async fn consumer_operations_need_their_rights() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    publish(&s, &t.orders, "orders.created", "1").await;
    let auth = bearer(&t.orders);
    let mut member = s
        .stream(
            "pattern=orders.%3E&durable=orders-worker&ack=manual&from=oldest",
            &[("authorization", auth.as_str())],
        )
        .await;
    member.expect_subscribed().await;
    let id = member.expect_event().await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let intruder = bearer(&t.intruder);
    let st = s
        .stream(
            "pattern=orders.%3E&durable=orders-worker&ack=manual",
            &[("authorization", intruder.as_str())],
        )
        .await;
    assert_eq!(
        st.status,
        StatusCode::FORBIDDEN,
        "attach needs subscribe and attach"
    );
    let st = s
        .stream(
            "pattern=public.%3E&durable=orders-worker&ack=manual",
            &[("authorization", intruder.as_str())],
        )
        .await;
    assert_eq!(
        st.status,
        StatusCode::FORBIDDEN,
        "attach needs the attach right"
    );
    for (method, path, body, right) in [
        (
            Method::GET,
            "/v1/consumers/orders-worker".to_owned(),
            "",
            "manage",
        ),
        (
            Method::POST,
            "/v1/consumers/orders-worker/seek?to=oldest".to_owned(),
            "",
            "manage",
        ),
        (
            Method::PATCH,
            "/v1/consumers/orders-worker".to_owned(),
            r#"{"ack_wait":"1s"}"#,
            "manage",
        ),
        (
            Method::DELETE,
            "/v1/consumers/orders-worker".to_owned(),
            "",
            "manage",
        ),
        (
            Method::POST,
            format!("/v1/consumers/orders-worker/events/{}/ack", enc(&id)),
            "",
            "ack",
        ),
        (
            Method::POST,
            "/v1/consumers/orders-worker/acks".to_owned(),
            "[]",
            "ack",
        ),
    ] {
        let msg = call(&s, method.clone(), &path, &t.intruder, body)
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(
            msg.contains(&format!("{right} right on consumer \"orders-worker\"")),
            "{method} {path}: {msg}"
        );
    }
    let listed = call(&s, Method::GET, "/v1/consumers", &t.intruder, "")
        .await
        .json();
    assert_eq!(listed, json!([]), "the intruder sees no consumer");

    // The team acks; it may not delete (no manage); ops may.
    let path = format!("/v1/consumers/orders-worker/events/{}/ack", enc(&id));
    let r = call(&s, Method::POST, &path, &t.orders, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    call(
        &s,
        Method::DELETE,
        "/v1/consumers/orders-worker",
        &t.orders,
        "",
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let listed = call(&s, Method::GET, "/v1/consumers", &t.ops, "")
        .await
        .json();
    assert_eq!(listed[0]["name"], "orders-worker");
    let r = call(
        &s,
        Method::DELETE,
        "/v1/consumers/orders-worker",
        &t.ops,
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn a_single_subscriptions_consumer_belongs_to_its_principal() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    publish(&s, &t.orders, "orders.created", "1").await;
    let auth = bearer(&t.orders);
    let mut st = s
        .stream(
            "pattern=orders.%3E&ack=manual&from=oldest",
            &[("authorization", auth.as_str())],
        )
        .await;
    let hello = st.expect_subscribed().await;
    let name = hello["consumer"].as_str().unwrap().to_owned();
    let id = st.expect_event().await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/consumers/{}/events/{}/ack", enc(&name), enc(&id));
    let msg = call(&s, Method::POST, &path, &t.intruder, "")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("another principal's subscription"), "{msg}");
    let r = call(&s, Method::POST, &path, &t.orders, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// Attack: publishing first with someone else's `Bus-Msg-Id`.
#[tokio::test]
async fn dedup_ids_are_scoped_by_principal_also_after_a_restart() {
    let t = Tokens::new();
    let (mut s, _) = server_with(&auth_yaml(&t, ""), Engine::Disk).await;
    publish(&s, &t.admin, "orders.setup", "").await;
    let with_id = |token: &str| (bearer(token), "order-17");
    for (who, payload, want) in [
        (&t.intruder, "forged", StatusCode::CREATED),
        (&t.orders, "real", StatusCode::CREATED),
        (&t.orders, "real again", StatusCode::OK),
    ] {
        let (auth, id) = with_id(who);
        let r = s
            .post(
                "/v1/events/orders.placed",
                &[("authorization", &auth), ("bus-msg-id", id)],
                payload.to_owned(),
            )
            .await;
        assert_eq!(r.status, want, "{payload}: {}", r.text());
    }
    s.restart().await;
    let (auth, id) = with_id(&t.orders);
    let r = s
        .post(
            "/v1/events/orders.placed",
            &[("authorization", &auth), ("bus-msg-id", id)],
            "x",
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "still a duplicate after recovery: {}",
        r.text()
    );
    let page = call(
        &s,
        Method::GET,
        "/v1/events?pattern=orders.placed&from=oldest",
        &t.admin,
        "",
    )
    .await;
    let events = page.json()["events"].as_array().unwrap().clone();
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["payload"].as_str().unwrap().to_owned(),
                e["msg_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("forged".to_owned(), "order-17".to_owned()),
            ("real".to_owned(), "order-17".to_owned())
        ],
        "both stored, each showing the id as given"
    );
}

/// Attack: creating namespaces up to the limit so that nobody else can.
#[tokio::test]
async fn creating_a_namespace_needs_the_right_within_a_quota_that_survives_a_restart() {
    let t = Tokens::new();
    let (mut s, _) = server_with(&auth_yaml(&t, ""), Engine::Disk).await;
    let msg = publish(&s, &t.intruder, "junk.1", "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("create_namespace"), "{msg}");
    assert_eq!(
        publish(&s, &t.orders, "orders.a", "x").await.status,
        StatusCode::CREATED
    );
    let msg = publish(&s, &t.orders, "orders2.a", "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("quota of 1"), "{msg}");
    assert_eq!(
        publish(&s, &t.intruder, "orders.b", "x").await.status,
        StatusCode::CREATED,
        "an existing namespace takes anyone's allowed publish"
    );
    s.restart().await;
    publish(&s, &t.orders, "orders2.a", "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let names: Vec<_> = call(&s, Method::GET, "/v1/namespaces", &t.admin, "")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["orders"]);
}

#[tokio::test]
async fn listings_show_what_the_principal_may_see_and_metrics_need_their_right() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    publish(&s, &t.orders, "orders.a", "x").await;
    publish(&s, &t.admin, "secret.a", "x").await;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(
            call(&s, Method::GET, "/v1/namespaces", &t.orders, "")
                .await
                .json()
        ),
        ["orders"]
    );
    assert_eq!(
        names(
            call(&s, Method::GET, "/v1/namespaces", &t.admin, "")
                .await
                .json()
        ),
        ["orders", "secret"]
    );
    call(&s, Method::GET, "/v1/namespaces/secret", &t.orders, "")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    let auth = bearer(&t.orders);
    let mut st = s
        .stream("pattern=orders.%3E", &[("authorization", auth.as_str())])
        .await;
    st.expect_subscribed().await;
    let subs = call(&s, Method::GET, "/v1/subscriptions", &t.ops, "")
        .await
        .json();
    assert_eq!(
        subs.as_array().unwrap().len(),
        1,
        "ops may subscribe to orders.>: {subs}"
    );
    let subs = call(&s, Method::GET, "/v1/subscriptions", &t.intruder, "")
        .await
        .json();
    assert_eq!(subs, json!([]));

    call(&s, Method::GET, "/metrics", &t.intruder, "")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let text = call(&s, Method::GET, "/metrics", &t.ops, "").await.text();
    assert!(
        metric(&text, "bus_auth_refusals_total{reason=\"forbidden\"}").unwrap() >= 2.0,
        "{text}"
    );
}

#[tokio::test]
async fn jwts_of_each_algorithm_are_checked_and_capped_by_their_key() {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let es = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let indent = |pem: String| pem.replace('\n', "\n      ");
    let extra = format!(
        "  - kid: ed-1\n    alg: EdDSA\n    public_key: |\n      {}\n    grants: {{publish: {{allow: [\"user.>\"]}}}}\n  - kid: es-1\n    alg: ES256\n    public_key: |\n      {}\n    grants: {{publish: {{allow: [\"user.>\"]}}}}\n",
        indent(ed.public_key_pem()).trim_end(),
        indent(es.public_key_pem()).trim_end(),
    );
    let t = Tokens::new();
    let (s, auth) = server_with(&auth_yaml(&t, &extra), Engine::Memory).await;
    publish(&s, &t.admin, "user.setup", "").await;
    let claims = |sub: &str| json!({"sub": sub, "aud": "bus", "exp": now() + 3600, "bus": {"publish": {"allow": [">"]}}});

    let ed_key = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
    let es_key = EncodingKey::from_ec_pem(es.serialize_pem().as_bytes()).unwrap();
    for token in [
        hs("hs-1", HS_SECRET, claims("web")),
        jwt(Algorithm::EdDSA, "ed-1", &ed_key, claims("web")),
        jwt(Algorithm::ES256, "es-1", &es_key, claims("web")),
    ] {
        let r = publish(&s, &token, "user.1", "hi").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let msg = publish(&s, &token, "billing.x", "hi")
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(
            msg.contains("\"web\""),
            "the key's grants cap the claim: {msg}"
        );
    }

    for (token, why) in [
        (
            hs(
                "hs-1",
                HS_SECRET,
                json!({"sub": "web", "aud": "bus", "exp": now() - 3600}),
            ),
            "expired",
        ),
        (
            hs(
                "hs-1",
                HS_SECRET,
                json!({"sub": "web", "aud": "bus", "exp": now() + 3600, "nbf": now() + 3600}),
            ),
            "not valid yet",
        ),
        (
            hs(
                "hs-1",
                HS_SECRET,
                json!({"sub": "web", "aud": "other", "exp": now() + 3600}),
            ),
            "audience",
        ),
        (hs("hs-1", HS_SECRET_2, claims("web")), "signature"),
        (hs("nope", HS_SECRET, claims("web")), "unknown"),
        (
            hs("hs-1", HS_SECRET, json!({"sub": "web", "aud": "bus"})),
            "exp",
        ),
        (
            jwt(Algorithm::ES256, "hs-1", &es_key, claims("web")),
            "signed with",
        ),
    ] {
        let r = publish(&s, &token, "user.1", "x").await;
        let msg = r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(msg.contains(why), "{why}: {msg}");
        let www = r.header("www-authenticate").unwrap();
        assert!(www.contains("invalid_token") && www.contains(why), "{www}");
    }

    // Rotation: a second key, then the first withdrawn by a reload.
    let old = hs("hs-1", HS_SECRET, claims("web"));
    let rotated = auth_yaml(&t, "")
        .replace("kid: hs-1", "kid: hs-2")
        .replace(HS_SECRET, HS_SECRET_2);
    auth.replace_yaml(&rotated).unwrap();
    let msg = publish(&s, &old, "user.1", "x")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(msg.contains("unknown"), "{msg}");
    let new = hs("hs-2", HS_SECRET_2, claims("web"));
    assert_eq!(
        publish(&s, &new, "user.1", "x").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_jwt_in_access_token_opens_a_stream_and_never_reaches_the_handler() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    publish(&s, &t.admin, "user.42.inbox", "hello").await;
    let token = hs(
        "hs-1",
        HS_SECRET,
        json!({"sub": "page-42", "aud": "bus", "exp": now() + 600}),
    );
    let mut st = s
        .stream(
            &format!("pattern=user.42.inbox&from=oldest&access_token={token}"),
            &[],
        )
        .await;
    st.expect_subscribed().await;
    assert_eq!(st.expect_event().await.json()["payload"], "hello");
    let r = s.get(&format!("/v1/whoami?access_token={token}")).await;
    assert_eq!(r.json()["principal"], "page-42");
    assert_eq!(r.json()["credential"], "jwt");
}

#[tokio::test]
async fn a_session_cookie_stands_in_for_the_token_until_closed() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    publish(&s, &t.orders, "orders.a", "1").await;
    let r = call(&s, Method::POST, "/v1/session", &t.orders, "").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_owned();
    for attr in [
        "bus_session=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "not Secure over plain HTTP: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();

    let me = s
        .get_with("/v1/whoami", &[("cookie", &cookie)])
        .await
        .json();
    assert_eq!(
        (me["principal"].as_str(), me["credential"].as_str()),
        (Some("orders"), Some("session"))
    );
    let mut st = s
        .stream("pattern=orders.%3E&from=oldest", &[("cookie", &cookie)])
        .await;
    st.expect_subscribed().await;
    assert_eq!(st.expect_event().await.json()["payload"], "1");
    let r = s
        .get_with("/v1/events?pattern=billing.%3E", &[("cookie", &cookie)])
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");

    let r = s
        .request(Method::DELETE, "/v1/session", &[("cookie", &cookie)], "")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    s.get_with("/v1/whoami", &[("cookie", &cookie)])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // The session ended with it; the stream opened with it ends at the next reload check.
    let r = s.post("/v1/session", &[("cookie", &cookie)], "").await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_reload_ends_the_streams_of_revoked_tokens_and_withdrawn_rights() {
    let t = Tokens::new();
    let yaml = auth_yaml(&t, "");
    let (s, auth) = server_with(&yaml, Engine::Memory).await;
    publish(&s, &t.admin, "rpc.setup", "").await;
    let orders = bearer(&t.orders);
    let ops = bearer(&t.ops);
    let mut revoked = s
        .stream("pattern=orders.%3E", &[("authorization", orders.as_str())])
        .await;
    revoked.expect_subscribed().await;
    let mut narrowed = s
        .stream("pattern=orders.%3E", &[("authorization", ops.as_str())])
        .await;
    narrowed.expect_subscribed().await;
    let mut kept = s
        .stream("pattern=rpc.%3E", &[("authorization", &bearer(&t.rpc))])
        .await;
    kept.expect_subscribed().await;

    let reloaded = yaml
        .replace(&format!("[\"{}\"]", stored(&t.orders)), "[]")
        .replace(
            "      subscribe: {allow: [\"orders.>\"]}\n      consumers: [{names: [\"orders-*\"], rights: [manage]}]",
            "      subscribe: {allow: [\"orders.audit\"]}\n      consumers: [{names: [\"orders-*\"], rights: [manage]}]",
        );
    assert_ne!(reloaded, yaml);
    auth.replace_yaml(&reloaded).unwrap();

    let m = revoked.next_event().await.expect("an error event");
    assert_eq!(m.event.as_deref(), Some("error"));
    assert_eq!(m.json()["code"], "unauthorized", "{m:?}");
    let m = narrowed.next_event().await.expect("an error event");
    assert_eq!(m.json()["code"], "forbidden", "{m:?}");
    assert!(
        m.json()["message"].as_str().unwrap().contains("orders.>"),
        "{m:?}"
    );
    publish(&s, &t.rpc, "rpc.x", "still here").await;
    assert_eq!(kept.expect_event().await.json()["payload"], "still here");
    publish(&s, &t.orders, "orders.x", "")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn failed_authentication_is_rate_limited_per_address() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    let max = bus_broker::auth::failures::MAX_FAILURES;
    for i in 0..max {
        let r = call(
            &s,
            Method::GET,
            "/v1/whoami",
            &format!("bus_guess-{i}-aaaaaaaaaaaaaaaa"),
            "",
        )
        .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let r = call(&s, Method::GET, "/v1/whoami", &t.orders, "").await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(s.get("/healthz").await.status, StatusCode::OK);
    let text = call(&s, Method::GET, "/metrics", &t.admin, "").await;
    assert_eq!(
        text.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is blocked for every credential"
    );
}

#[tokio::test]
async fn without_auth_everyone_may_do_everything_as_before() {
    let s = TestServer::builder().engine(Engine::Memory).start().await;
    let me = s.get_json("/v1/whoami").await;
    assert_eq!(
        (me["auth"].as_bool(), me["credential"].as_str()),
        (Some(false), Some("none"))
    );
    let r = s.post("/v1/events/a.b", &[("bus-msg-id", "m")], "x").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s.post("/v1/events/a.b", &[("bus-msg-id", "m")], "y").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the legacy scope dedups as before"
    );
    assert_eq!(s.get("/metrics").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_stream_ends_when_its_jwt_expires() {
    let t = Tokens::new();
    let (s, _) = server_with(&auth_yaml(&t, ""), Engine::Memory).await;
    publish(&s, &t.admin, "user.setup", "").await;
    // Valid for about two more seconds: `exp` is past, within the leeway.
    let leeway = bus_broker::auth::jwt::LEEWAY_SECS;
    let token = hs(
        "hs-1",
        HS_SECRET,
        json!({"sub": "page", "aud": "bus", "exp": now() + 2 - leeway}),
    );
    let auth = bearer(&token);
    let mut st = s
        .stream("pattern=user.%3E", &[("authorization", auth.as_str())])
        .await;
    st.expect_subscribed().await;
    let m = st.next_event().await.expect("an error event at expiry");
    assert_eq!(m.event.as_deref(), Some("error"), "{m:?}");
    assert_eq!(m.json()["code"], "unauthorized");
    assert!(
        m.json()["message"].as_str().unwrap().contains("expired"),
        "{m:?}"
    );
    assert!(st.next_event().await.is_none(), "the stream ended");
}
