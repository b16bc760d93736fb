//! The console at `/ui`: a page in the browser over the broker's own API (namespaces,
//! consumers, publish, live tail), served from files embedded in the binary
//! (`broker/console/`), so there is no build step and nothing is fetched from elsewhere.
//!
//! The files hold no data and need no credential (the page signs in through the session
//! cookie, `POST /v1/session`); what the page then reads is authorised like any request.
//! Every answer carries a strict Content-Security-Policy: scripts, styles and connections to
//! this origin only, no inline script or style, no framing, no forms posting elsewhere.
//! `/ui` is not part of the API, so `openapi.yaml` leaves it out.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::{Error, ErrorCode};

/// The policy every console answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The embedded files: name, content type, body.
const FILES: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
];

/// Whether `path` is the console's (served without a credential).
pub fn is_console_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// `GET /ui`: to `/ui/`, so that the page's relative links resolve under it.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/`: the page.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{file}`: one of the page's files, or `404 not_found`.
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(name: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return Error::new(
            ErrorCode::NotFound,
            format!("the console has no file {name:?}"),
        )
        .into_response();
    };
    let mut r = (StatusCode::OK, *body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Embedded in the binary: a new version comes with a new broker, so revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_and_names_only_embedded_files() {
        let (_, _, html) = FILES[0];
        // Every <script> has a src, and no element carries a style or an on* handler, which
        // the policy would block.
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..i + html[i..].find('>').unwrap_or(0)];
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        assert!(!html.contains("style="), "inline style");
        assert!(!html.contains("<style"), "inline style sheet");
        assert!(
            !html.contains(" onclick") && !html.contains(" onload"),
            "inline handler"
        );
        for link in ["console.js", "console.css"] {
            assert!(html.contains(link), "{link} linked");
            assert!(FILES.iter().any(|(n, _, _)| *n == link), "{link} embedded");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from elsewhere"
        );
    }

    #[test]
    fn the_script_never_writes_html_or_storage() {
        let (_, _, js) = FILES[1];
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "localStorage",
            "sessionStorage",
            "eval(",
        ] {
            assert!(!js.contains(banned), "console.js uses {banned}");
        }
    }

    #[test]
    fn console_paths() {
        assert!(
            is_console_path("/ui") && is_console_path("/ui/") && is_console_path("/ui/console.js")
        );
        assert!(!is_console_path("/uix") && !is_console_path("/v1/ui"));
    }
}
