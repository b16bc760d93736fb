//! `examples/browser/` in a real headless Chromium (through chromedriver): the page, served
//! from another origin as its README says, follows a pattern with `EventSource`, shows
//! events live, and after a broker restart on the same address resumes by itself with no
//! event missed or repeated. Without Chromium and chromedriver the test says so and skips,
//! except under CI (`.ci/run` installs them).

use axum::Router;
use axum::routing::get;
use bus_testkit::*;
use serde_json::json;

const INDEX: &str = include_str!("../../examples/browser/index.html");
const SCRIPT: &str = include_str!("../../examples/browser/follow.js");
const STYLE: &str = include_str!("../../examples/browser/follow.css");

/// Serves the example's three files, as `python3 -m http.server` would.
async fn serve_example(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/",
            get(|| async { ([("content-type", "text/html")], INDEX) }),
        )
        .route(
            "/follow.js",
            get(|| async { ([("content-type", "text/javascript")], SCRIPT) }),
        )
        .route(
            "/follow.css",
            get(|| async { ([("content-type", "text/css")], STYLE) }),
        )
        .route("/favicon.ico", get(|| async { "" }));
    axum::serve(listener, app).await
}

/// The subjects' payloads on the page, newest first.
const ROWS: &str =
    "Array.from(document.querySelectorAll('#events li pre')).map(p => p.textContent)";

fn rows_when(n: usize) -> String {
    format!("const r = {ROWS}; return r.length >= {n} ? r : null;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_page_follows_live_and_resumes_after_a_restart() {
    let Some((chromium, driver)) = webdriver::available() else {
        return;
    };
    let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", page.local_addr().unwrap());
    let allowed = origin.clone();
    let mut s = TestServer::start(move |c| c.cors_origins = vec![allowed.clone()]).await;
    let server = tokio::spawn(serve_example(page));

    let b = webdriver::Browser::start(&chromium, &driver).await;
    let url = format!(
        "{origin}/?broker={}&pattern={}",
        enc(&s.base()),
        enc("user.>")
    );
    b.open(&url).await;
    b.wait_for(
        "the page to subscribe",
        "return document.querySelector('#status').textContent.startsWith('live') || null",
    )
    .await;

    s.publish("user.created", "ada").await;
    s.publish("user.created", "grace").await;
    let rows = b.wait_for("two live events", &rows_when(2)).await;
    assert_eq!(rows, json!(["grace", "ada"]));

    // Restart on the same address: the page reconnects by itself with Last-Event-ID.
    s.restart_in_place().await;
    s.publish("user.deleted", "ada").await;
    let rows = b
        .wait_for("the event after the restart", &rows_when(3))
        .await;
    assert_eq!(
        rows,
        json!(["ada", "grace", "ada"]),
        "nothing missed, nothing repeated"
    );
    let subjects = b
        .script(
            "return Array.from(document.querySelectorAll('#events li .subject')).map(s => s.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(
        subjects,
        json!(["user.deleted", "user.created", "user.created"])
    );
    b.quit().await;
    server.abort();
}
