//! A real browser driven from a test: Debian's headless Chromium through `chromedriver`'s W3C
//! WebDriver HTTP API ([`Browser`]). Only what the browser tests need: open a page, find an
//! element by CSS selector, type, click, run a script, take a screenshot.
//!
//! `chromedriver` listens on a port it picks (`--port=0`), read from its first lines. Every
//! WebDriver call is bounded by [`BROWSER_WAIT`]; waiting for the page to show something is
//! [`Browser::wait_for`], a bounded poll of a script's answer (a page's DOM announces nothing a
//! test could await). [`available`] says whether both programs are installed; under CI (`CI`
//! set) a missing one is a failure, since `.ci/run` installs them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::http::HttpClient;

/// Longest any one WebDriver call, or a [`Browser::wait_for`], may take.
pub const BROWSER_WAIT: Duration = Duration::from_secs(60);

/// The W3C key under which an element reference comes.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium and chromedriver binaries (`BUS_CHROMIUM`, `BUS_CHROMEDRIVER`, else Debian's
/// paths), when both exist. Without them, under CI, this panics; elsewhere the caller skips
/// and says so.
pub fn available() -> Option<(PathBuf, PathBuf)> {
    let pick = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    };
    let chromium = pick("BUS_CHROMIUM", "/usr/bin/chromium");
    let driver = pick("BUS_CHROMEDRIVER", "/usr/bin/chromedriver");
    if chromium.exists() && driver.exists() {
        return Some((chromium, driver));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} or {} is missing: .ci/run installs Debian's chromium and chromium-driver",
        chromium.display(),
        driver.display()
    );
    eprintln!(
        "skipped: needs {} and {} (apt-get install chromium chromium-driver)",
        chromium.display(),
        driver.display()
    );
    None
}

/// One headless Chromium behind its own chromedriver; both end when this is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: HttpClient,
    _profile: tempfile::TempDir,
}

/// A reference to an element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a port of its choosing and a headless Chromium session.
    pub async fn start(chromium: &std::path::Path, driver: &std::path::Path) -> Browser {
        let mut child = Command::new(driver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let port = tokio::time::timeout(BROWSER_WAIT, async {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await.expect("read chromedriver") {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromedriver says on which port it listens");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let v = browser.call(Method::POST, "/session", caps).await;
        browser.session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session id")
            .to_owned();
        browser
    }

    /// One WebDriver command; returns its `value`, panicking on a WebDriver error.
    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        let uri = format!("{}{}", self.base, path);
        let req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Full::new(
                if method == Method::GET || method == Method::DELETE {
                    Bytes::new()
                } else {
                    Bytes::from(body.to_string())
                },
            ))
            .expect("request");
        let resp = tokio::time::timeout(BROWSER_WAIT, async {
            let resp = self.client.request(req).await.expect("WebDriver request");
            let status = resp.status();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            (status, bytes)
        })
        .await
        .unwrap_or_else(|_| panic!("WebDriver {method} {path} took over {BROWSER_WAIT:?}"));
        let v: Value = serde_json::from_slice(&resp.1).expect("WebDriver answers JSON");
        assert!(
            resp.0.is_success(),
            "WebDriver {method} {path}: {} {v}",
            resp.0
        );
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{}", self.session, rest)
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.call(Method::POST, &self.at("/url"), json!({"url": url}))
            .await;
    }

    /// The element matching the CSS `selector` (which must exist now).
    pub async fn find(&self, selector: &str) -> Element {
        let v = self
            .call(
                Method::POST,
                &self.at("/element"),
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        Element(
            v[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("no element {selector}: {v}"))
                .to_owned(),
        )
    }

    /// Types `text` into the element matching `selector`, after clearing it.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let e = self.find(selector).await;
        self.call(
            Method::POST,
            &self.at(&format!("/element/{}/clear", e.0)),
            json!({}),
        )
        .await;
        self.call(
            Method::POST,
            &self.at(&format!("/element/{}/value", e.0)),
            json!({"text": text}),
        )
        .await;
    }

    /// Clicks the element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let e = self.find(selector).await;
        self.call(
            Method::POST,
            &self.at(&format!("/element/{}/click", e.0)),
            json!({}),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            Method::POST,
            &self.at("/execute/sync"),
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits (at most [`BROWSER_WAIT`]) until `script` returns something other than `null` or
    /// `false`, and returns that.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let v = self.script(script, json!([])).await;
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show {what} within {BROWSER_WAIT:?}"
            );
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    /// A PNG screenshot of the page.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self
            .call(Method::GET, &self.at("/screenshot"), json!({}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("screenshot decodes")
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        self.call(Method::DELETE, &path, json!({})).await;
        let _ = self.driver.kill().await;
    }
}
