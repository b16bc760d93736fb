//! The console at `/ui` in a real headless Chromium driven through chromedriver: sign in with a
//! token, follow a pattern, see an event published through the API appear, restart the broker
//! mid-stream and see the page resume with no gap and no duplicate, pause and resume, publish
//! from the page's form; and the files' strict Content-Security-Policy.
//!
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`); without them the
//! browser test says so and skips, except under CI. `BUS_CONSOLE_SCREENSHOT=<file.png>` saves
//! a screenshot of the console as the test leaves it (the README's).

use std::sync::Arc;

use bus_broker::auth::Auth;
use bus_broker::auth::bearer_token::{TokenHash, generate};
use bus_testkit::*;
use hyper::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_console_files_carry_a_strict_policy_and_need_no_credential() {
    let token = generate().unwrap();
    let s = server(&token, Engine::Memory).await;
    let r = s.get("/ui/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let csp = r.header("content-security-policy").expect("a policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(r.text().contains("console.js"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let js = s.get("/ui/console.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let redirect = s.get("/ui").await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.header("location"), Some("/ui/"));
    s.get("/ui/secrets.yaml")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // The page is open; the data behind it is not.
    s.get("/v1/namespaces")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A broker with the principal `console` (admin) holding `token`.
async fn server(token: &str, engine: Engine) -> TestServer {
    let yaml = format!(
        r#"
principals:
  - name: console
    tokens: ["{}"]
    permissions: {{admin: true}}
"#,
        TokenHash::of(token).to_stored()
    );
    // A new `Auth` on every start, as a new process would have: sessions do not survive a
    // restart.
    TestServer::builder()
        .engine(engine)
        .config(move |c| c.auth = Some(Arc::new(Auth::from_yaml(&yaml).expect("auth file"))))
        .start()
        .await
}

async fn publish(s: &TestServer, token: &str, subject: &str, payload: serde_json::Value) {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    s.publish_with(subject, &headers, payload.to_string()).await;
}

/// The `n` of each event row on the page, newest first.
const ROWS: &str = "return Array.from(document.querySelectorAll('#events li.event pre'))\
    .map(p => { try { return JSON.parse(p.textContent).n } catch (_) { return p.textContent } });";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_follows_and_resumes_after_a_restart() {
    let Some((chromium, driver)) = webdriver::available() else {
        return;
    };
    let token = generate().unwrap();
    // On disk, so that the restart keeps the events and the cursor stays valid.
    let mut s = server(&token, Engine::Disk).await;
    let b = webdriver::Browser::start(&chromium, &driver).await;
    b.open(&s.url("/ui/")).await;

    b.wait_for(
        "the sign-in form",
        "return !document.querySelector('#sign-in-panel').classList.contains('hidden')",
    )
    .await;
    b.type_into("#token", "bus_wrong").await;
    b.click("#sign-in").await;
    let e = b
        .wait_for(
            "the refusal",
            "return document.querySelector('#sign-in-error').textContent || null",
        )
        .await;
    assert!(e.as_str().unwrap().contains("unauthorized"), "{e}");
    b.type_into("#token", &token).await;
    b.click("#sign-in").await;
    let who = b
        .wait_for("who is signed in", "const t = document.querySelector('#who').textContent; return t.includes('console') ? t : null")
        .await;
    assert!(who.as_str().unwrap().contains("(session)"), "{who}");
    // The token went nowhere but memory.
    let stored = b
        .script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie", json!([]))
        .await;
    assert!(!stored.as_str().unwrap().contains(&token), "{stored}");
    assert!(
        !stored.as_str().unwrap().contains("bus_session"),
        "the cookie is HttpOnly: {stored}"
    );

    publish(&s, &token, "orders.placed", json!({"n": 1})).await;
    b.type_into("#pattern", "orders.>").await;
    b.script(
        "document.querySelector('#from').value = 'oldest'",
        json!([]),
    )
    .await;
    b.click("#follow").await;
    let rows = b.wait_for("event 1", &rows_when(1)).await;
    assert_eq!(rows, json!([1]));

    // The namespace and its figures.
    b.click("#refresh").await;
    b.wait_for(
        "the namespace row",
        "return document.querySelector('#namespaces tbody').textContent.includes('orders') || null",
    )
    .await;

    // Restart mid-stream: the session is gone with the old process; the page opens a new one
    // with the token it kept and reads on from its cursor.
    s.restart_in_place().await;
    publish(&s, &token, "orders.placed", json!({"n": 2})).await;
    publish(&s, &token, "orders.placed", json!({"n": 3})).await;
    let rows = b
        .wait_for("events 2 and 3 after the restart", &rows_when(3))
        .await;
    assert_eq!(rows, json!([3, 2, 1]), "no gap, no duplicate");

    // Pause, publish, resume: the event comes once, after the resume.
    b.click("#pause").await;
    b.wait_for(
        "paused",
        "return document.querySelector('#tail-status').textContent.startsWith('paused') || null",
    )
    .await;
    publish(&s, &token, "orders.placed", json!({"n": 4})).await;
    assert_eq!(
        b.script(ROWS, json!([])).await,
        json!([3, 2, 1]),
        "nothing while paused"
    );
    b.click("#pause").await;
    let rows = b.wait_for("event 4 after the resume", &rows_when(4)).await;
    assert_eq!(rows, json!([4, 3, 2, 1]));

    // Publishing from the page's form.
    b.type_into("#pub-subject", "orders.placed").await;
    b.type_into("#pub-payload", r#"{"n": 5}"#).await;
    b.click("#publish").await;
    let rows = b.wait_for("event 5 from the form", &rows_when(5)).await;
    assert_eq!(rows, json!([5, 4, 3, 2, 1]));
    let result = b
        .script(
            "return document.querySelector('#publish-result').textContent",
            json!([]),
        )
        .await;
    assert!(
        result
            .as_str()
            .unwrap()
            .starts_with("published orders.placed as orders-"),
        "{result}"
    );

    if let Some(path) = std::env::var_os("BUS_CONSOLE_SCREENSHOT") {
        b.click("#refresh").await;
        std::fs::write(&path, b.screenshot().await).expect("write the screenshot");
    }
    b.quit().await;
}

/// A script answering the rows once there are `n` of them.
fn rows_when(n: usize) -> String {
    format!(
        "const r = ({}); return r.length >= {n} ? r : null;",
        ROWS.trim_start_matches("return ").trim_end_matches(';')
    )
}
