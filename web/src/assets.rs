//! The embedded files, by the path they are served at. A file added to
//! `assets/` is served only once it is listed here; the tests check that
//! everything the page refers to is.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The URL path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
    hash: u64,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
        Asset {
            path,
            content_type,
            body,
            hash: fnv1a(body),
        }
    }

    /// A strong entity tag: the hash of the bytes, fixed at build time.
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the web client.
pub static ASSETS: &[Asset] = &[
    Asset::new(
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    Asset::new(
        "/assets/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    Asset::new(
        "/assets/icon.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    ),
    Asset::new(
        "/assets/js/app.js",
        JS,
        include_bytes!("../assets/js/app.js"),
    ),
    Asset::new(
        "/assets/js/api.js",
        JS,
        include_bytes!("../assets/js/api.js"),
    ),
    Asset::new(
        "/assets/js/session.js",
        JS,
        include_bytes!("../assets/js/session.js"),
    ),
    Asset::new(
        "/assets/js/view.js",
        JS,
        include_bytes!("../assets/js/view.js"),
    ),
];
