//! A real browser on another origin follows a stream with the session cookie: headless
//! Chromium (Debian's `chromium`, which `.ci/run` installs) loads a page from a second local
//! server, exchanges a bearer token for `bus_session` with `POST /v1/session`, then opens an
//! `EventSource` with `withCredentials` — the one way a browser page can authenticate a stream.
//!
//! The page reports what it saw to its own server, and the test waits on those reports (bounded),
//! never on time. Without Chromium the test says so and skips, except under CI (`CI` set), where
//! a missing browser is a failure: `.ci/run` must have installed it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use bus_broker::auth::Auth;
use bus_broker::auth::bearer_token::{TokenHash, generate};
use bus_testkit::*;
use serde_json::Value;
use tokio::sync::mpsc;

/// How long the browser may take to start and report each step: a bound on failure, not a wait.
const BROWSER_BOUND: Duration = Duration::from_secs(90);

/// The browser binary: `BUS_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("BUS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

/// The page: it reports each step to its own origin's `/report`, as JSON.
fn page(broker: &str, token: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>bus page</title></head><body><script>
const B = "{broker}";
const report = (o) => fetch("/report", {{method: "POST", body: JSON.stringify(o)}});
function follow(pattern, credentials) {{
  const es = new EventSource(B + "/v1/stream?from=oldest&pattern=" + encodeURIComponent(pattern),
                             {{withCredentials: credentials}});
  es.addEventListener("subscribed", () => report({{step: "subscribed", pattern, credentials}}));
  es.onmessage = (m) => report({{step: "event", pattern, data: JSON.parse(m.data)}});
  es.onerror = () => {{
    if (es.readyState === EventSource.CLOSED) report({{step: "closed", pattern, credentials}});
  }};
  return es;
}}
(async () => {{
  try {{
    // Before any session: the stream is refused, and EventSource gives up.
    follow("orders.>", false);
    const s = await fetch(B + "/v1/session", {{method: "POST", credentials: "include",
                                              headers: {{"Authorization": "Bearer {token}"}}}});
    report({{step: "session", status: s.status, body: await s.json()}});
    const w = await fetch(B + "/v1/whoami", {{credentials: "include"}});
    report({{step: "whoami", status: w.status, body: await w.json()}});
    follow("billing.>", true);
    follow("orders.>", true);
  }} catch (e) {{
    report({{step: "exception", message: String(e)}});
  }}
}})();
</script></body></html>"#
    )
}

/// The page's own server on port 0: `/` serves `html`, `/report` forwards each body to `tx`.
async fn page_server(
    listener: tokio::net::TcpListener,
    html: String,
    tx: mpsc::Sender<Value>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let html = html.clone();
                async move { ([("content-type", "text/html; charset=utf-8")], html) }
            }),
        )
        .route(
            "/report",
            post(move |body: String| {
                let tx = tx.clone();
                async move {
                    let v = serde_json::from_str(&body).unwrap_or_else(
                        |_| serde_json::json!({"step": "unparsable", "body": body}),
                    );
                    let _ = tx.send(v).await;
                    ""
                }
            }),
        )
        // The browser asks for an icon; answer it rather than log a 404 each run.
        .route("/favicon.ico", get(|| async { "" }));
    axum::serve(listener, app).await
}

/// Publishes a text event as the principal of `token`, asserting `201`.
async fn publish(s: &TestServer, token: &str, subject: &str, text: &'static str) {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "text/plain"),
    ];
    s.publish_with(subject, &headers, text).await;
}

/// The page's reports, in the order they arrived. The page sends them concurrently (one
/// `fetch` each), so they may arrive in another order than the page made them: a report is
/// looked for among those not yet claimed, never assumed to be next.
struct Reports {
    rx: mpsc::Receiver<Value>,
    unclaimed: Vec<Value>,
}

impl Reports {
    /// The first unclaimed report for which `pick` says yes, waiting for more (bounded).
    async fn take(&mut self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.unclaimed.iter().position(&pick) {
            return self.unclaimed.remove(i);
        }
        let found = tokio::time::timeout(BROWSER_BOUND, async {
            while let Some(v) = self.rx.recv().await {
                assert_ne!(v["step"], "exception", "the page threw: {v}");
                if pick(&v) {
                    return Some(v);
                }
                self.unclaimed.push(v);
            }
            None
        })
        .await;
        match found {
            Ok(Some(v)) => v,
            Ok(None) => panic!("the page server stopped before the page reported {what}"),
            Err(_) => panic!(
                "the page did not report {what} within {BROWSER_BOUND:?}; unclaimed: {:?}",
                self.unclaimed
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_follows_a_stream_with_the_session_cookie() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but Chromium is missing: .ci/run installs Debian's `chromium`"
        );
        eprintln!(
            "skipped: no Chromium at /usr/bin/chromium (or BUS_CHROMIUM); `apt-get install chromium`"
        );
        return;
    };

    // The page's origin must be known to the broker's CORS list: bind it first.
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://{}", page_listener.local_addr().unwrap());

    let token = generate().unwrap();
    let publisher = generate().unwrap();
    let yaml = format!(
        r#"
principals:
  - name: orders-page
    tokens: ["{page}"]
    permissions:
      subscribe: {{allow: ["orders.>"]}}
  - name: orders-service
    tokens: ["{service}"]
    permissions:
      publish: {{allow: ["orders.>"]}}
      create_namespace: {{names: ["orders"], quota: 1}}
"#,
        page = TokenHash::of(&token).to_stored(),
        service = TokenHash::of(&publisher).to_stored(),
    );

    let auth = Arc::new(Auth::from_yaml(&yaml).expect("auth file"));
    let origin = page_origin.clone();
    let s = TestServer::builder()
        .engine(Engine::Memory)
        .config(move |c| {
            c.auth = Some(auth.clone());
            c.cors_origins = vec![origin.clone()];
        })
        .start()
        .await;
    // Published before the page exists: the page reads it from oldest.
    publish(&s, &publisher, "orders.placed", "first").await;

    let (tx, rx) = mpsc::channel(64);
    let mut reports = Reports {
        rx,
        unclaimed: Vec::new(),
    };
    let html = page(&s.base(), &token);
    let server = tokio::spawn(page_server(page_listener, html, tx));

    let profile = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{page_origin}/"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");

    // Without the cookie (withCredentials false, no session yet) the broker answers 401 and
    // EventSource closes.
    let v = reports
        .take("the anonymous stream closing", |v| {
            v["step"] == "closed" && v["credentials"] == false
        })
        .await;
    assert_eq!(v["pattern"], "orders.>");

    let v = reports
        .take("the session", |v| v["step"] == "session")
        .await;
    assert_eq!(v["status"], 201, "POST /v1/session across origins: {v}");
    assert_eq!(v["body"]["principal"], "orders-page", "{v}");

    // The cookie is sent back to the broker's origin from the page's.
    let v = reports.take("whoami", |v| v["step"] == "whoami").await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"]["principal"], "orders-page", "{v}");
    assert_eq!(v["body"]["credential"], "session", "{v}");

    // A pattern outside the principal's rights: 403, and the EventSource closes.
    reports
        .take("the forbidden stream closing", |v| {
            v["step"] == "closed" && v["pattern"] == "billing.>"
        })
        .await;

    reports
        .take("the cookie stream subscribed", |v| {
            v["step"] == "subscribed" && v["pattern"] == "orders.>"
        })
        .await;
    let v = reports
        .take("the stored event", |v| v["step"] == "event")
        .await;
    assert_eq!(v["data"]["subject"], "orders.placed", "{v}");
    assert_eq!(v["data"]["payload"], "first", "{v}");

    // And live: an event published now reaches the open page.
    publish(&s, &publisher, "orders.shipped", "second").await;
    let v = reports
        .take("the live event", |v| v["step"] == "event")
        .await;
    assert_eq!(v["data"]["subject"], "orders.shipped", "{v}");
    assert_eq!(v["data"]["payload"], "second", "{v}");

    child.kill().await.ok();
    server.abort();
}
