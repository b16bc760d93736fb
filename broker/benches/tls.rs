//! Publish throughput over TLS against plain HTTP, in one run: what HTTPS costs.
//!
//! Run with `cargo bench -p bus-broker --bench tls`. Two brokers in this process on port 0
//! over the memory engine (so that the transport, not `fdatasync`, is what differs), one
//! plain and one serving a certificate made for the run (rcgen, via `bus-testkit`).
//! [`CONNECTIONS`] HTTP/1.1 connections each send single-event POSTs of [`PAYLOAD`] bytes
//! back to back for [`ROUND`]; rounds alternate plain and TLS [`ROUNDS`] times each, so that
//! drift of the machine falls on both. Reported per transport: the median and min–max of
//! each round's events/s. Client and brokers share the machine's cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus_testkit::{Engine, TestCerts, TestServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};

mod common;

/// Connections per round, each with one request in flight.
const CONNECTIONS: usize = 16;
/// Length of one measured round.
const ROUND: Duration = Duration::from_secs(3);
/// Rounds per transport.
const ROUNDS: usize = 5;
/// Payload of each event.
const PAYLOAD: usize = 128;

/// Where the client connects, and how.
#[derive(Clone)]
enum Transport {
    Plain,
    Tls(tokio_rustls::TlsConnector),
}

/// Sends POSTs on one connection until `until`; adds each `201` to `done`.
async fn drive(
    addr: std::net::SocketAddr,
    transport: Transport,
    until: Instant,
    done: Arc<AtomicU64>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut sender = match transport {
        Transport::Plain => {
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            s
        }
        Transport::Tls(connector) => {
            let name = ServerName::try_from("localhost").expect("name");
            let tls = connector.connect(name, tcp).await.expect("TLS handshake");
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            s
        }
    };
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    while Instant::now() < until {
        let req = hyper::Request::post("/v1/events/bench.a")
            .header("host", "localhost")
            .header("content-type", "application/octet-stream")
            .body(Full::new(payload.clone()))
            .expect("request");
        let resp = sender.send_request(req).await.expect("publish");
        assert_eq!(resp.status(), 201, "publish refused");
        let _ = resp.into_body().collect().await;
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// One round: events/s over `CONNECTIONS` connections.
async fn round(addr: std::net::SocketAddr, transport: &Transport) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + ROUND;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(drive(addr, transport.clone(), until, done.clone())))
        .collect();
    for t in tasks {
        t.await.expect("connection task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "median {:>9.0} events/s (min {:.0}, max {:.0})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

fn main() {
    let wanted = common::wanted();
    if !wanted("tls") {
        return;
    }
    common::runtime().block_on(async {
        let certs = TestCerts::new("bench");
        let files = certs.server.clone();
        let plain = TestServer::start_default_on(Engine::Memory).await;
        let tls = TestServer::start_on(Engine::Memory, move |c| c.tls = Some(files.clone())).await;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&certs.ca).expect("CA file") {
            roots.add(c.expect("CA")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = Transport::Tls(tokio_rustls::TlsConnector::from(Arc::new(config)));
        // Warm both up.
        round(plain.addr(), &Transport::Plain).await;
        round(tls.addr(), &connector).await;
        let (mut p, mut t) = (Vec::new(), Vec::new());
        for i in 0..ROUNDS {
            let a = round(plain.addr(), &Transport::Plain).await;
            let b = round(tls.addr(), &connector).await;
            println!("round {}: plain {a:>9.0} events/s, tls {b:>9.0} events/s", i + 1);
            p.push(a);
            t.push(b);
        }
        let ratio = {
            let mut r: Vec<f64> = t.iter().zip(&p).map(|(t, p)| t / p).collect();
            r.sort_by(|a, b| a.total_cmp(b));
            r[r.len() / 2]
        };
        println!("plain HTTP/1.1: {}", summary(p));
        println!("TLS   HTTP/1.1: {}", summary(t));
        println!(
            "TLS / plain (median of rounds): {:.2}; {CONNECTIONS} connections, {PAYLOAD} B payloads, {:?} rounds",
            ratio, ROUND
        );
    });
}
