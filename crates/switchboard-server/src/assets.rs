//! The browser client (`/switchboard.js`, `/switchboard.d.ts`) and the demo
//! page (`/`, `/demo.js`, `/demo.css`), compiled into the binary.
//!
//! Each response carries its content type, `Cache-Control: no-cache` and an
//! `ETag` (a hash of the file, computed at compile time): the URLs are not
//! versioned, so browsers revalidate on every load and get `304 Not
//! Modified` until the binary changes. The page also gets a strict
//! Content-Security-Policy: scripts and styles from this origin only, and
//! connections to this origin's WebSocket endpoints.

use switchboard::axum::Router;
use switchboard::axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use switchboard::axum::response::{IntoResponse, Response};
use switchboard::axum::routing::get;

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// FNV-1a of the body, hex-encoded and quoted, as the `ETag`.
    etag: &'static str,
    /// Whether this is an HTML page (and so gets the page's security headers).
    page: bool,
}

/// 64-bit FNV-1a, usable in a `const`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits of `fnv1a(body)` + `"`.
const fn etag(body: &str) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(body.as_bytes());
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $content_type:literal, $page:literal) => {{
        const BODY: &str = include_str!($path);
        const TAG: [u8; 18] = etag(BODY);
        Asset {
            body: BODY,
            content_type: $content_type,
            etag: match std::str::from_utf8(&TAG) {
                Ok(tag) => tag,
                Err(_) => panic!("an ETag is ASCII"),
            },
            page: $page,
        }
    }};
}

const CLIENT_JS: Asset = asset!(
    "../../../clients/js/switchboard.js",
    "text/javascript; charset=utf-8",
    false
);
const CLIENT_DTS: Asset = asset!(
    "../../../clients/js/switchboard.d.ts",
    "application/typescript; charset=utf-8",
    false
);
const INDEX_HTML: Asset = asset!("../static/index.html", "text/html; charset=utf-8", true);
const DEMO_JS: Asset = asset!("../static/demo.js", "text/javascript; charset=utf-8", false);
const DEMO_CSS: Asset = asset!("../static/demo.css", "text/css; charset=utf-8", false);

/// The page may load scripts and styles from this origin only and connect
/// to it (`ws:`/`wss:` are listed because older browsers do not count a
/// same-host WebSocket as `'self'`).
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The routes: `/`, `/demo.js`, `/demo.css`, `/switchboard.js` and
/// `/switchboard.d.ts` (GET and HEAD). No fallback, so it merges into any
/// router.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/", get(|h: HeaderMap| serve(&INDEX_HTML, h)))
        .route("/demo.js", get(|h: HeaderMap| serve(&DEMO_JS, h)))
        .route("/demo.css", get(|h: HeaderMap| serve(&DEMO_CSS, h)))
        .route("/switchboard.js", get(|h: HeaderMap| serve(&CLIENT_JS, h)))
        .route(
            "/switchboard.d.ts",
            get(|h: HeaderMap| serve(&CLIENT_DTS, h)),
        )
}

async fn serve(asset: &'static Asset, request: HeaderMap) -> Response {
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == asset.etag || tag == "*");
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.page {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = switchboard::axum::serve(listener, routes()).await;
        });
        format!("http://{addr}")
    }

    #[test]
    fn etags_are_quoted_hex_and_differ() {
        assert_eq!(etag(""), *b"\"cbf29ce484222325\"");
        let tags = [&CLIENT_JS, &CLIENT_DTS, &INDEX_HTML, &DEMO_JS, &DEMO_CSS].map(|a| a.etag);
        for (i, a) in tags.iter().enumerate() {
            assert_eq!(a.len(), 18);
            assert!(tags[i + 1..].iter().all(|b| a != b));
        }
    }

    #[tokio::test]
    async fn serves_each_asset_with_its_type_and_revalidates() {
        let base = start().await;
        let http = reqwest::Client::new();
        for (path, asset, needle) in [
            ("/", &INDEX_HTML, "<title>Switchboard"),
            ("/demo.js", &DEMO_JS, "/switchboard.js"),
            ("/demo.css", &DEMO_CSS, "--accent"),
            ("/switchboard.js", &CLIENT_JS, "export class Switchboard"),
            (
                "/switchboard.d.ts",
                &CLIENT_DTS,
                "export declare class Switchboard",
            ),
        ] {
            let res = http.get(format!("{base}{path}")).send().await.expect(path);
            assert_eq!(res.status(), 200, "{path}");
            let h = res.headers().clone();
            assert_eq!(h[header::CONTENT_TYPE], asset.content_type, "{path}");
            assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{path}");
            assert_eq!(h[header::ETAG], asset.etag, "{path}");
            assert_eq!(h.contains_key(header::CONTENT_SECURITY_POLICY), asset.page);
            let body = res.text().await.expect("body");
            assert!(body.contains(needle), "{path} lacks {needle:?}");

            let res = http
                .get(format!("{base}{path}"))
                .header(header::IF_NONE_MATCH, format!("\"x\", {}", asset.etag))
                .send()
                .await
                .expect(path);
            assert_eq!(res.status(), 304, "{path}");
            assert_eq!(res.headers()[header::ETAG], asset.etag);
            assert!(res.text().await.expect("body").is_empty());
        }
        let res = http
            .get(format!("{base}/nope.js"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 404);
    }
}
