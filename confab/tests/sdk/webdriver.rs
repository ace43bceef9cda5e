//! Just enough of W3C WebDriver to drive a real headless Chromium through
//! its `chromedriver`: sessions, navigation, typing, clicks, scripts and
//! screenshots. Blocking HTTP/1.1 on loopback, one request per connection,
//! so the test thread drives the browsers while the node and the test's
//! clients run on the node's runtime.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::common::PATIENCE;

/// A running `chromedriver`, stopped on drop.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port and waits until it
    /// says it is ready. `scripts/deps.sh` installs it with Chromium.
    pub fn start() -> Driver {
        let port = crate::common::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/deps.sh installs it)");
        let driver = Driver { child, port };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok((200, v)) = request(port, "GET", "/status", None) {
                if v["value"]["ready"] == json!(true) {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser (a session with its own profile: its own localStorage).
pub struct Browser {
    port: u16,
    session: String,
    /// Names its screenshots.
    pub name: String,
    shots: PathBuf,
}

/// Where the screenshots go: `target/web-client/`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/web-client")
}

impl Browser {
    /// A fresh headless Chromium.
    pub fn open(driver: &Driver, name: &str) -> Browser {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1200,800",
                         "--lang=en-GB"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (status, v) = request(driver.port, "POST", "/session", Some(caps)).unwrap();
        assert_eq!(status, 200, "new session: {v}");
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            port: driver.port,
            session: v["value"]["sessionId"].as_str().unwrap().to_owned(),
            name: name.to_owned(),
            shots,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, v) = request(self.port, method, &path, body)
            .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.name));
        assert_eq!(status, 200, "{}: {method} {path}: {v}", self.name);
        v["value"].clone()
    }

    /// Loads `url`.
    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Opens a new tab in this browser (same profile: same storage) and
    /// switches to it; its handle.
    pub fn new_tab(&self) -> String {
        let v = self.call("POST", "/window/new", Some(json!({ "type": "tab" })));
        let handle = v["handle"].as_str().unwrap().to_owned();
        self.switch_to(&handle);
        handle
    }

    /// The current tab's handle.
    pub fn tab(&self) -> String {
        self.call("GET", "/window", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Makes `handle` the tab that later commands drive.
    pub fn switch_to(&self, handle: &str) {
        self.call("POST", "/window", Some(json!({ "handle": handle })));
    }

    /// Reloads the page.
    pub fn reload(&self) {
        self.call("POST", "/refresh", Some(json!({})));
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: no element {css}", self.name))
            .to_owned()
    }

    /// Types `text` into the element, as key presses (`\n` is Enter).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Saves a screenshot as `target/web-client/<step>-<name>.png`.
    pub fn screenshot(&self, step: &str) {
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(format!("{step}-{}.png", self.name)), bytes).unwrap();
    }

    /// What the page logged to its console.
    pub fn console(&self) -> Value {
        request(
            self.port,
            "POST",
            &format!("/session/{}/se/log", self.session),
            Some(json!({"type": "browser"})),
        )
        .map(|(_, v)| v["value"].clone())
        .unwrap_or(Value::Null)
    }

    /// Polls `script` until it returns something other than `false`,
    /// `null`, `0` or `""`; returns that. On timeout the test fails with a
    /// screenshot (`fail-<name>.png`) and the page's console.
    pub fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.js(script);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot("fail");
                panic!(
                    "{}: waited {PATIENCE:?} for {what}; last {v}; console {}",
                    self.name,
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromium (Debian package chromium; scripts/deps.sh installs it)")
}

/// One HTTP/1.1 request; the status and the JSON body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open whatever the request says:
    // the head's length (or the last chunk) ends the answer.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let (head, mut body) = loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the answer's head".into());
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(),
                raw[split + 4..].to_vec(),
            );
        }
    };
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let done = match length {
            Some(len) => body.len() >= len,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if chunked {
        body = dechunk(&body)?;
    }
    let value = serde_json::from_slice(&body).map_err(|e| format!("{e}: {head}"))?;
    Ok((status, value))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").ok_or("chunk")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..line])
                .map_err(|e| e.to_string())?
                .trim(),
            16,
        )
        .map_err(|e| e.to_string())?;
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&b[line + 2..line + 2 + size]);
        b = &b[line + 4 + size..];
    }
}
