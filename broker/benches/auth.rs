//! Publish throughput with credentials against auth off, in one run: what `--auth` costs.
//!
//! Run with `cargo bench -p bus-broker --bench auth`. Two brokers in this process on port 0,
//! both on the disk engine at `--fsync never` (under `target/bench-tmp`), so that the
//! credential check, not `fdatasync`, is what differs: one without `--auth`, one with an auth
//! file holding a principal with a static token and an HS256 key. Three cases, each
//! [`CONNECTIONS`] HTTP/1.1 connections sending single-event POSTs of [`PAYLOAD`] bytes back to
//! back for [`ROUND`]:
//! - `off`: no credential, against the broker without auth;
//! - `token`: `Authorization: Bearer bus_…`, a static token (SHA-256, then a constant-time
//!   comparison against every stored digest);
//! - `jwt`: `Authorization: Bearer <JWT>`, one token for the whole run, so that after the first
//!   request it is answered from the verified-token cache (the realistic case: a service
//!   reuses its token until near expiry).
//!
//! The cases alternate [`ROUNDS`] times so that drift of the machine falls on all three.
//! Reported: each case's median and min–max events/s, and each credential's ratio to `off`
//! (median of the per-round ratios). Client and brokers share the machine's cores, so those
//! ratios carry the machine's noise; the bench therefore also times the check alone —
//! [`CHECKS`] calls of `Auth::authenticate` per credential, one thread — and sets its cost
//! against the CPU time one publish takes (2 cores ÷ the `off` median), a figure that noise
//! moves far less.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bus_broker::auth::bearer_token::{TokenHash, generate};
use bus_broker::auth::{Auth, Presented};
use bus_broker::storage::FsyncPolicy;
use bus_testkit::TestServer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

mod common;

/// Connections per round, each with one request in flight.
const CONNECTIONS: usize = 16;
/// Length of one measured round.
const ROUND: Duration = Duration::from_secs(1);
/// Rounds per case: many short ones, so that the median of per-round ratios (neighbouring
/// rounds share the machine's state) is steady.
const ROUNDS: usize = 15;
/// Payload of each event.
const PAYLOAD: usize = 128;
/// Calls of `Auth::authenticate` timed per credential.
const CHECKS: u32 = 200_000;
/// The HS256 secret of the bench's key.
const SECRET: &str = "the auth bench's HS256 secret, over 32 bytes long";

/// Sends POSTs on one connection until `until`, with `authorization` when given; adds each
/// `201` to `done`.
async fn drive(
    addr: std::net::SocketAddr,
    authorization: Option<Arc<str>>,
    until: Instant,
    done: Arc<AtomicU64>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    while Instant::now() < until {
        let mut req = hyper::Request::post("/v1/events/bench.a")
            .header("host", "localhost")
            .header("content-type", "application/octet-stream");
        if let Some(a) = &authorization {
            req = req.header("authorization", &**a);
        }
        let req = req.body(Full::new(payload.clone())).expect("request");
        let resp = sender.send_request(req).await.expect("publish");
        assert_eq!(resp.status(), 201, "publish refused");
        let _ = resp.into_body().collect().await;
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// One round: events/s over `CONNECTIONS` connections.
async fn round(addr: std::net::SocketAddr, authorization: Option<&Arc<str>>) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + ROUND;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(drive(addr, authorization.cloned(), until, done.clone())))
        .collect();
    for t in tasks {
        t.await.expect("connection task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn summary(v: &[f64]) -> String {
    let v = sorted(v.to_vec());
    format!(
        "median {:>9.0} events/s (min {:.0}, max {:.0})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

/// The median and min–max of the per-round ratios `a[i] / b[i]`.
fn ratio(a: &[f64], b: &[f64]) -> String {
    let r = sorted(a.iter().zip(b).map(|(a, b)| a / b).collect());
    format!("{:.2} ({:.2}–{:.2})", r[r.len() / 2], r[0], r[r.len() - 1])
}

/// An HS256 JWT for `sub` with the key `bench`, valid for an hour.
fn jwt() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("bench".into());
    let claims = serde_json::json!({"sub": "bench-jwt", "aud": "bus", "exp": now + 3600});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode the JWT")
}

/// Nanoseconds per `authenticate` of `bearer` (the header's value without `Bearer `).
fn check_cost(auth: &Auth, bearer: &str) -> f64 {
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    // The first call verifies a JWT and fills the cache; time the steady state.
    auth.authenticate(Presented::Bearer(bearer), client)
        .expect("the bench's credential is accepted");
    let started = Instant::now();
    for _ in 0..CHECKS {
        let caller = auth.authenticate(Presented::Bearer(std::hint::black_box(bearer)), client);
        std::hint::black_box(caller.is_ok());
    }
    started.elapsed().as_nanos() as f64 / f64::from(CHECKS)
}

async fn start(auth: Option<Arc<Auth>>) -> TestServer {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    TestServer::builder()
        .config(move |c| {
            c.log.fsync = FsyncPolicy::Never;
            c.auth = auth.clone();
        })
        .dir_in(base)
        .start()
        .await
}

fn main() {
    let wanted = common::wanted();
    if !wanted("auth") {
        return;
    }
    let token = generate().expect("a token");
    let yaml = format!(
        r#"
audience: bus
principals:
  - name: bench-token
    tokens: ["{}"]
    permissions: {{publish: {{allow: ["bench.>"]}}, create_namespace: {{names: ["bench"], quota: 1}}}}
keys:
  - kid: bench
    alg: HS256
    secret: "{SECRET}"
    grants: {{publish: {{allow: ["bench.>"]}}, create_namespace: {{names: ["bench"], quota: 1}}}}
"#,
        TokenHash::of(&token).to_stored()
    );
    let auth = Arc::new(Auth::from_yaml(&yaml).expect("the bench's auth file"));
    let jwt = jwt();
    let token_ns = check_cost(&auth, &token);
    let jwt_ns = check_cost(&auth, &jwt);
    let bearer_token: Arc<str> = format!("Bearer {token}").into();
    let bearer_jwt: Arc<str> = format!("Bearer {jwt}").into();
    common::runtime().block_on(async {
        let off = start(None).await;
        let on = start(Some(auth)).await;
        // Warm all up (and create the namespace on both brokers).
        round(off.addr(), None).await;
        round(on.addr(), Some(&bearer_token)).await;
        round(on.addr(), Some(&bearer_jwt)).await;
        let (mut o, mut t, mut j) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..ROUNDS {
            let a = round(off.addr(), None).await;
            let b = round(on.addr(), Some(&bearer_token)).await;
            let c = round(on.addr(), Some(&bearer_jwt)).await;
            println!(
                "round {}: off {a:>9.0}, token {b:>9.0}, jwt {c:>9.0} events/s",
                i + 1
            );
            o.push(a);
            t.push(b);
            j.push(c);
        }
        println!("auth off:          {}", summary(&o));
        println!("static token:      {}", summary(&t));
        println!("JWT (cached):      {}", summary(&j));
        println!("token / off:       {}", ratio(&t, &o));
        println!("JWT / off:         {}", ratio(&j, &o));
        println!(
            "{CONNECTIONS} connections, {PAYLOAD} B payloads, --fsync never, {ROUNDS} rounds of {ROUND:?}"
        );
        // CPU time of one publish without auth: both cores over the events they served.
        let off_median = sorted(o.clone())[o.len() / 2];
        let publish_ns = 2.0 * 1e9 / off_median;
        println!(
            "the check alone: token {token_ns:.0} ns, cached JWT {jwt_ns:.0} ns per request; \
             a publish takes about {publish_ns:.0} ns of CPU without auth: {:.2} % and {:.2} %",
            100.0 * token_ns / publish_ns,
            100.0 * jwt_ns / publish_ns
        );
    });
}
