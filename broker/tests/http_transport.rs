//! End to end: the transport's defences. Silent, half-sent, stalled-body, idle and
//! never-reading connections are closed after their timeout while other clients are served
//! at once; a full `--max-connections` of silent sockets lets the next client in within the
//! header timeout; per-client limits (directly, through the PROXY protocol, and by
//! `X-Forwarded-For` from a trusted proxy); and the refusal to listen beyond loopback
//! without `--allow-anonymous`.
//!
//! Timeouts are short and real (the sockets are real); every wait is on the close itself
//! (a read returning end of file), bounded by `WAIT`, and checked not to come early.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bus_broker::trusted_proxies::TrustedProxies;
use bus_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// Wide enough that a loaded 2-core machine serves the other clients well inside them (the
// tests check the silent ones are still open by then), short enough to keep the suite quick.
const HEADER: Duration = Duration::from_millis(3000);
const BODY: Duration = Duration::from_millis(4000);
const IDLE: Duration = Duration::from_millis(2500);
const STALLED: Duration = Duration::from_millis(1000);

fn short_timeouts(c: &mut Config) {
    c.header_timeout = HEADER;
    c.body_timeout = BODY;
    c.idle_timeout = IDLE;
    c.stalled_stream_timeout = STALLED;
}

async fn connect(addr: SocketAddr) -> TcpStream {
    within("connect", TcpStream::connect(addr))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(c: &mut TcpStream) -> String {
    within("the server to close the connection", async {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    })
    .await
}

/// One request on `c`, kept alive; reads the whole response (by Content-Length).
async fn exchange(c: &mut TcpStream, request: &str) -> String {
    c.write_all(request.as_bytes()).await.expect("write");
    within("a response", async {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = c.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before a response: {:?}",
                String::from_utf8_lossy(&all)
            );
            all.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&all).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
        }
    })
    .await
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[tokio::test]
async fn silent_half_sent_and_stalled_body_connections_close_while_others_are_served() {
    let s = TestServer::start(short_timeouts).await;
    let started = Instant::now();
    let mut silent = connect(s.addr()).await;
    let mut half_head = connect(s.addr()).await;
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let mut stalled_body = connect(s.addr()).await;
    stalled_body
        .write_all(
            b"POST /v1/events/user.a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly ten b",
        )
        .await
        .unwrap();

    // Others are served at once, on a new connection and through the client.
    let mut other = connect(s.addr()).await;
    let answer = exchange(&mut other, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    s.publish("user.b", "served").await;
    // ... while the silent ones are still open (no end of file yet).
    for c in [&silent, &half_head] {
        let mut buf = [0u8; 1];
        assert!(
            matches!(c.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a silent connection was closed before others were served"
        );
    }

    assert_eq!(
        until_closed(&mut silent).await,
        "",
        "silent: closed without a word"
    );
    assert!(
        started.elapsed() >= HEADER,
        "closed early: {:?}",
        started.elapsed()
    );
    assert_eq!(until_closed(&mut half_head).await, "");
    let answer = until_closed(&mut stalled_body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(
        started.elapsed() >= BODY,
        "closed early: {:?}",
        started.elapsed()
    );
    // Nothing of the cut body was stored.
    assert!(s.pull_all("user.a").await.is_empty());
}

#[tokio::test]
async fn an_idle_keep_alive_closes_after_the_idle_timeout_a_busy_one_stays() {
    let s = TestServer::start(short_timeouts).await;
    let mut idle = connect(s.addr()).await;
    let asked = Instant::now();
    let answer = exchange(&mut idle, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A connection used more often than the idle timeout stays open throughout.
    let mut busy = connect(s.addr()).await;
    let mut closed = Box::pin(until_closed(&mut idle));
    let mut requests = 0;
    loop {
        tokio::select! {
            text = &mut closed => {
                assert_eq!(text, "");
                break;
            }
            () = tokio::time::sleep(IDLE / 5) => {
                let answer = exchange(&mut busy, HEALTHZ).await;
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                requests += 1;
            }
        }
    }
    assert!(
        asked.elapsed() >= IDLE,
        "closed early: {:?}",
        asked.elapsed()
    );
    assert!(
        requests >= 3,
        "the busy connection made {requests} requests"
    );
    let answer = exchange(&mut busy, HEALTHZ).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "busy connection still open: {answer}"
    );
}

#[tokio::test]
async fn a_full_house_of_silent_sockets_lets_the_next_client_in_within_the_header_timeout() {
    let s = TestServer::start(|c| {
        short_timeouts(c);
        c.max_connections = 50;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(connect(s.addr()).await);
    }
    let started = Instant::now();
    let mut next = connect(s.addr()).await;
    let answer = exchange(&mut next, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // In after the silent ones' header timeout, well before the test's own bound.
    assert!(
        started.elapsed() < HEADER * 5,
        "served only after {:?}",
        started.elapsed()
    );
    for c in &mut silent {
        assert_eq!(until_closed(c).await, "");
    }
}

#[tokio::test]
async fn a_stream_that_stops_reading_is_closed_a_reading_one_goes_on() {
    let s = TestServer::start(|c| {
        short_timeouts(c);
        // The stalled check alone must close it, not the heartbeat.
        c.heartbeat = Duration::from_secs(300);
    })
    .await;
    let mut reading = s.subscribe("pattern=big.%3E").await;
    // The reading one reads all along, counting until the last event.
    let reader = tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let m = reading.expect_event().await;
            if m.json()["payload"] == "after" {
                return n;
            }
            n += 1;
        }
    });
    // A subscriber with a small receive buffer that never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = within("connect", socket.connect(s.addr())).await.unwrap();
    stalled
        .write_all(b"GET /v1/stream?pattern=big.%3E HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    eventually("both subscriptions listed", || async {
        s.get_json("/v1/subscriptions")
            .await
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await;
    // Publish until the never-reading one fills its socket and is cut; the reading one
    // gets every event.
    let payload = "x".repeat(64 * 1024);
    let mut published = 0;
    loop {
        s.publish("big.a", &payload).await;
        published += 1;
        let live = s
            .get_json("/v1/subscriptions")
            .await
            .as_array()
            .unwrap()
            .len();
        if live == 1 {
            break;
        }
        assert!(published < 2000, "the stalled stream was never closed");
        tokio::time::sleep(STALLED / 4).await;
    }
    s.publish("big.a", "after").await;
    let got = within("the reading subscriber", reader).await.unwrap();
    assert_eq!(got, published, "the reading subscriber got every event");
}

#[tokio::test]
async fn limits_connections_per_client_and_gives_slots_back() {
    let s = TestServer::start(|c| {
        c.max_connections_per_client = 2;
        c.limit_loopback_clients = true;
    })
    .await;
    let mut a = connect(s.addr()).await;
    let mut b = connect(s.addr()).await;
    assert!(exchange(&mut a, HEALTHZ).await.starts_with("HTTP/1.1 200"));
    assert!(exchange(&mut b, HEALTHZ).await.starts_with("HTTP/1.1 200"));
    let mut third = connect(s.addr()).await;
    let answer = until_closed(&mut third).await;
    assert!(
        answer.contains(r#""code":"too_many_connections""#),
        "{answer}"
    );
    // A closed connection gives its slot back (noticed by the server on its own).
    drop(a);
    eventually("a slot to come back", || async {
        let mut c = connect(s.addr()).await;
        let _ = c.write_all(HEALTHZ.as_bytes()).await;
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.is_ok() && &buf == b"HTTP/1.1 200"
    })
    .await;
}

#[tokio::test]
async fn loopback_clients_are_not_limited_by_default() {
    let s = TestServer::start(|c| c.max_connections_per_client = 1).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = connect(s.addr()).await;
        assert!(exchange(&mut c, HEALTHZ).await.starts_with("HTTP/1.1 200"));
        open.push(c);
    }
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_by_proxy_protocol() {
    let s = TestServer::start(|c| {
        c.max_connections_per_client = 1;
        c.trusted_proxies = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    })
    .await;
    let proxied = |client: &str| {
        format!(
            "PROXY TCP4 {client} 127.0.0.1 5555 2021\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
    };
    let mut first = connect(s.addr()).await;
    let answer = exchange(&mut first, &proxied("192.0.2.7")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut again = connect(s.addr()).await;
    again
        .write_all(proxied("192.0.2.7").as_bytes())
        .await
        .unwrap();
    let answer = until_closed(&mut again).await;
    assert!(
        answer.contains(r#""code":"too_many_connections""#),
        "{answer}"
    );
    let mut other = connect(s.addr()).await;
    let answer = exchange(&mut other, &proxied("192.0.2.8")).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "another client: {answer}"
    );
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_not_believed() {
    let s = TestServer::start_default().await;
    let r = raw_http(
        s.addr(),
        b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 2021\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
}

#[tokio::test]
async fn forwarded_clients_of_a_trusted_proxy_are_limited_per_address() {
    let s = TestServer::start(|c| {
        c.max_connections_per_client = 1;
        c.trusted_proxies = TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    })
    .await;
    // A stream holds the one slot of 192.0.2.1 while it is open.
    let mut held = s
        .stream("pattern=a.%3E", &[("x-forwarded-for", "192.0.2.1")])
        .await;
    held.expect_subscribed().await;
    let r = s
        .get_with(
            "/healthz",
            &[("x-forwarded-for", "198.51.100.9, 192.0.2.1")],
        )
        .await;
    r.assert_error(hyper::StatusCode::TOO_MANY_REQUESTS, "too_many_connections");
    let r = s
        .get_with("/healthz", &[("x-forwarded-for", "192.0.2.2")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    drop(held);
    eventually("the stream's slot to come back", || async {
        s.get_with("/healthz", &[("x-forwarded-for", "192.0.2.1")])
            .await
            .status
            == 200
    })
    .await;
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let s = TestServer::start(|c| c.max_connections_per_client = 1).await;
    let mut held = s
        .stream("pattern=a.%3E", &[("x-forwarded-for", "192.0.2.1")])
        .await;
    held.expect_subscribed().await;
    let r = s
        .get_with("/healthz", &[("x-forwarded-for", "192.0.2.1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback_without_allow_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let config = Config {
        addr: listener.local_addr().unwrap(),
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let e = config.validate().unwrap_err();
    assert!(e.contains("--allow-anonymous"), "{e}");
    let e = Broker::in_memory(config.clone()).await.unwrap_err();
    assert!(e.to_string().contains("--allow-anonymous"), "{e}");
    // `run` checks the listener it is given as well, whatever the configured address.
    let config = Config {
        addr: "127.0.0.1:2021".parse().unwrap(),
        ..config
    };
    let broker = Broker::in_memory(config).await.unwrap();
    let e = within(
        "run to refuse",
        bus_broker::server::run(listener, broker.clone(), std::future::pending()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("--allow-anonymous"), "{e}");
    broker.close().await;

    // With it, the broker serves, and answers any Host (it has no loopback-only default).
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Config {
        addr: listener.local_addr().unwrap(),
        data_dir: dir.path().join("data"),
        allow_anonymous: true,
        ..Config::default()
    };
    config.validate().unwrap();
    let broker = Broker::in_memory(config).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bus_broker::server::run(listener, broker.clone(), async {
        let _ = rx.await;
    }));
    let r = raw_http(
        SocketAddr::from(([127, 0, 0, 1], port)),
        b"GET /healthz HTTP/1.1\r\nHost: bus.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let _ = tx.send(());
    within("run to return", task).await.unwrap().unwrap();
    broker.close().await;
}

#[tokio::test]
async fn timeouts_too_long_for_a_clock_mean_no_timeout() {
    // `--idle-timeout 500000000000d` parses; adding it to an instant would overflow.
    let s = TestServer::start(|c| {
        c.header_timeout = Duration::MAX;
        c.body_timeout = Duration::MAX;
        c.idle_timeout = Duration::MAX;
        c.stalled_stream_timeout = Duration::MAX;
    })
    .await;
    let mut c = connect(s.addr()).await;
    let published = exchange(
        &mut c,
        "POST /v1/events/user.a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert!(published.starts_with("HTTP/1.1 201"), "{published}");
    let health = exchange(&mut c, HEALTHZ).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}
