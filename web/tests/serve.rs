//! What a browser gets from the web client's routes: every file the page
//! refers to, with its type, the security headers that keep the page to
//! its own origin, and a 304 for what it already has.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use confab_web::{routes, ASSETS, CONTENT_SECURITY_POLICY};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(path: &str, etag: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(tag) = etag {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    routes()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(r: Response) -> Vec<u8> {
    r.into_body().collect().await.unwrap().to_bytes().to_vec()
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_types_and_policy() {
    for asset in ASSETS {
        let r = get(asset.path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", asset.path);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], asset.content_type);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert_eq!(h[header::ETAG], asset.etag().as_str());
        assert_eq!(body(r).await, asset.body, "{}", asset.path);
    }
    let index = get("/", None).await;
    let html = String::from_utf8(body(index).await).unwrap();
    assert!(html.contains("<script type=\"module\" src=\"/assets/js/app.js\">"));
}

#[tokio::test]
async fn a_file_the_browser_has_is_answered_not_modified() {
    let asset = &ASSETS[0];
    let r = get(asset.path, Some(&asset.etag())).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(body(r).await.is_empty());
    let listed = format!("\"0000000000000000\", {}", asset.etag());
    assert_eq!(
        get(asset.path, Some(&listed)).await.status(),
        StatusCode::NOT_MODIFIED
    );
    let stale = get(asset.path, Some("\"0000000000000000\"")).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(body(stale).await, asset.body);
}

#[tokio::test]
async fn nothing_but_the_listed_files_is_served() {
    for path in [
        "/assets/",
        "/assets/js/",
        "/assets/../Cargo.toml",
        "/index.html",
    ] {
        assert_eq!(
            get(path, None).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

/// Every file the page or a module refers to is embedded: a file added to
/// `assets/` and not to the list would be a 404 in the browser.
#[test]
fn every_file_the_page_refers_to_is_embedded() {
    let served: BTreeSet<&str> = ASSETS.iter().map(|a| a.path).collect();
    let mut wanted = BTreeSet::new();
    for asset in ASSETS {
        let text = std::str::from_utf8(asset.body).unwrap();
        for attr in ["src=\"", "href=\""] {
            for part in text.split(attr).skip(1) {
                wanted.insert(part.split('"').next().unwrap().to_owned());
            }
        }
        // Module imports are relative to the importing file.
        let dir = &asset.path[..asset.path.rfind('/').unwrap() + 1];
        for part in text.split("from \"./").skip(1) {
            wanted.insert(format!("{dir}{}", part.split('"').next().unwrap()));
        }
    }
    // Everything but the page itself is referred to from somewhere.
    assert_eq!(wanted.len(), ASSETS.len() - 1, "{wanted:?}");
    for path in &wanted {
        assert!(
            served.contains(path.as_str()),
            "{path} is referred to but not served"
        );
    }
    // And nothing in the directory is left out of the list.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut on_disk = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                on_disk.push(p);
            }
        }
    }
    for p in on_disk {
        let rel = p.strip_prefix(&dir).unwrap().to_str().unwrap().to_owned();
        let path = if rel == "index.html" {
            "/".to_owned()
        } else {
            format!("/assets/{rel}")
        };
        assert!(
            served.contains(path.as_str()),
            "{rel} is in assets/ but not served"
        );
    }
}
