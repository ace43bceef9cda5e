//! confab's web client, served by the node on the API port at `/`.
//!
//! The client is plain ES modules and one stylesheet, embedded in the
//! binary: nothing to build, nothing fetched from anywhere but the node,
//! and the page a node serves always matches the protocol it speaks. The
//! page talks to the HTTP API on the same origin and to the gateway over
//! `confab.v1.json` (docs/protocol.md), like any other client.

mod assets;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use assets::{Asset, ASSETS};

/// What the page may load and connect to: its own origin, plus the
/// gateway's WebSocket (another port, so another origin). No inline
/// script or style, no frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self' ws: wss:; img-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The routes of the web client: `/` and every asset under `/assets/`.
/// Merge them into a router that has no route of its own at those paths.
pub fn routes() -> Router {
    let mut router = Router::new();
    for asset in ASSETS {
        let page = move |headers: HeaderMap| async move { serve(asset, &headers) };
        router = router.route(asset.path, get(page));
    }
    router
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    // Revalidated on every load: a node upgraded in place serves its new
    // client at once, and an unchanged one costs a 304.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (StatusCode::OK, headers, asset.body).into_response()
}
