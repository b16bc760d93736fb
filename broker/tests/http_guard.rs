//! End to end: the `Host` check (DNS rebinding, `421 misdirected_request`) and the `Origin`
//! check (cross-site requests, `403 forbidden_origin`), with the requests each must refuse
//! and those it must not.

use bus_testkit::*;
use hyper::StatusCode;

async fn with_host(s: &TestServer, host: &str) -> RawResp {
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw_http(s.addr(), req.as_bytes()).await
}

engines!(a_loopback_broker_answers_only_loopback_names);
async fn a_loopback_broker_answers_only_loopback_names(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let port = s.addr().port();
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("ui.localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "127.0.0.2".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let r = with_host(&s, &host).await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    for host in [
        "attacker.example",
        "attacker.example:2021",
        "10.0.0.1",
        "localhost.evil",
    ] {
        with_host(&s, host)
            .await
            .assert_error(421, "misdirected_request");
    }
    // A refused Host changes nothing.
    let r = raw_http(
        s.addr(),
        b"POST /v1/events/user.a HTTP/1.1\r\nHost: attacker.example\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .await;
    r.assert_error(421, "misdirected_request");
    assert!(s.pull_all("user.a").await.is_empty());
}

#[tokio::test]
async fn allowed_hosts_add_names_and_credentials_allow_any() {
    let s = TestServer::start(|c| c.allowed_hosts = vec!["bus.example.com".into(), ".corp".into()])
        .await;
    for host in [
        "bus.example.com",
        "bus.example.com:8443",
        "a.corp",
        "localhost",
    ] {
        assert_eq!(with_host(&s, host).await.status, 200, "{host}");
    }
    with_host(&s, "attacker.example")
        .await
        .assert_error(421, "misdirected_request");

    let s = TestServer::start(|c| {
        c.auth = Some(std::sync::Arc::new(
            bus_broker::auth::Auth::from_yaml("{}").unwrap(),
        ))
    })
    .await;
    assert_eq!(with_host(&s, "anything.example").await.status, 200);
}

engines!(a_foreign_origin_may_not_change_state);
async fn a_foreign_origin_may_not_change_state(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let evil = [("origin", "https://evil.example")];
    let plain = [
        ("content-type", "text/plain"),
        ("origin", "https://evil.example"),
    ];
    s.post("/v1/events/user.a", &plain, "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    s.post("/v1/events", &[("origin", "null")], "[]")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    s.post("/v1/requests/rpc.a?timeout=1s", &evil, "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    assert!(s.pull_all("user.>").await.is_empty(), "nothing was stored");

    // Consumers: attaching, acking, managing.
    let (mut member, _) = s.attach("pattern=work.%3E&durable=d&ack=manual").await;
    s.publish("work.a", "1").await;
    let id = member.expect_event().await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for query in [
        "pattern=work.%3E&durable=d",
        "pattern=work.%3E&group=g",
        "pattern=work.%3E&ack=manual",
    ] {
        let st = s.stream(query, &evil).await;
        assert_eq!(st.status, StatusCode::FORBIDDEN, "{query}");
    }
    let path = format!("/v1/consumers/d/events/{}/ack", enc(&id));
    s.post(&path, &evil, "")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    s.post("/v1/consumers/d/acks", &evil, "[]")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    s.request(hyper::Method::DELETE, "/v1/consumers/d", &evil, "")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    s.request(hyper::Method::PATCH, "/v1/consumers/d", &evil, "{}")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    s.post("/v1/consumers/d/seek?to=oldest", &evil, "")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    assert_eq!(
        s.consumer("d").await["name"],
        "d",
        "the consumer is still there"
    );
    // Without an Origin (a service, curl), the same ack goes through.
    s.expect_ack("d", &id, "ack", "acked").await;
}

engines!(reads_own_pages_listed_origins_and_origin_less_requests_pass);
async fn reads_own_pages_listed_origins_and_origin_less_requests_pass(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.cors_origins = vec!["https://app.example".into()]
    })
    .await;
    let evil = [("origin", "https://evil.example")];
    // Read-only requests from any page: a plain stream, a pull, management reads.
    let mut st = s.stream("pattern=user.%3E", &evil).await;
    st.expect_subscribed().await;
    assert_eq!(
        s.get_with("/v1/events?pattern=user.%3E", &evil)
            .await
            .status,
        200
    );
    assert_eq!(s.get_with("/v1/namespaces", &evil).await.status, 200);
    // Publishing: no Origin, the broker's own pages, a listed origin.
    let own = format!("http://localhost:{}", s.addr().port());
    for headers in [
        vec![("content-type", "text/plain")],
        vec![("content-type", "text/plain"), ("origin", own.as_str())],
        vec![
            ("content-type", "text/plain"),
            ("origin", "https://app.example"),
        ],
    ] {
        let r = s
            .request(
                hyper::Method::POST,
                "/v1/events/user.a",
                &[
                    headers.as_slice(),
                    &[("host", &format!("localhost:{}", s.addr().port()))],
                ]
                .concat(),
                "x",
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{headers:?}: {}", r.text());
    }
    st.expect_events(3).await;
    // A page of the same host on another port is another origin.
    let other_port = format!("http://localhost:{}", s.addr().port() + 1);
    let r = s
        .post(
            "/v1/events/user.a",
            &[
                ("origin", other_port.as_str()),
                ("host", &format!("localhost:{}", s.addr().port())),
            ],
            "x",
        )
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
}
