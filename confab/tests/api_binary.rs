//! The `confab serve` binary with the API wired in: store opened and
//! migrated (SQLite in the data dir, or PostgreSQL through
//! `--database-url`), token key generated, `/v1` next to `/healthz` and
//! `/readyz`, clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// Which relational backend the node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[tokio::test]
async fn confab_serve_runs_the_api_on_sqlite() {
    confab_serve_runs_the_api(Backend::Sqlite).await;
}

#[tokio::test]
async fn confab_serve_runs_the_api_on_postgres() {
    confab_serve_runs_the_api(Backend::Postgres).await;
}

/// A fresh schema on the server in `CONFAB_TEST_PG_URL` (its absence fails
/// the test: the PostgreSQL half is never skipped).
async fn pg_schema_url() -> String {
    let base = std::env::var("CONFAB_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("CONFAB_TEST_PG_URL is not set; run `make test`, which starts a server");
    confab_directory::store::scratch_schema(&base)
        .await
        .unwrap()
}

/// Removes ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn confab_serve_runs_the_api(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--api-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .args(["--ws-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"])
        .env_remove("CONFAB_DATABASE_URL")
        .env_remove("CONFAB_TOKEN_SECRET")
        .env("CONFAB_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if b == Backend::Postgres {
        // A fresh, empty schema that the binary migrates itself.
        cmd.arg("--database-url").arg(pg_schema_url().await);
    }
    let mut child = cmd.spawn().expect("starting confab serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(plain(&line));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let api_addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "confab serve did not report its API address; log:\n{}",
                    seen.join("\n")
                );
            }
        };
        seen.push(line.clone());
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("api="))
            .filter(|_| line.contains("confab serving"))
        {
            break addr.to_owned();
        }
    };

    let base = format!("http://{api_addr}");
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { raw_get(&url).await }
    };
    let (status, body) = get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Ready once everything started.
    let mut ready = get("/readyz").await.0;
    for _ in 0..50 {
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = get("/readyz").await.0;
    }
    assert_eq!(ready, 200);
    let (status, body) = get("/v1/gateway").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("websocket_url"), "{body}");
    let (status, body) = post_json(
        &format!("{base}/v1/signup"),
        json!({"username": "ada", "password": "long enough"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(
        &format!("{base}/v1/login"),
        json!({"username": "ada", "password": "wrong one"}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("INVALID_CREDENTIALS"));

    // The generated token key, private to the server's user.
    let key = dir.path().join("token.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        dir.path().join("confab.sqlite3").exists(),
        b == Backend::Sqlite
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "confab serve exited with {exit}");
}

async fn raw_get(url: &str) -> (u16, String) {
    request("GET", url, None).await
}

async fn post_json(url: &str, body: serde_json::Value) -> (u16, String) {
    request("POST", url, Some(body)).await
}

async fn request(method: &str, url: &str, body: Option<serde_json::Value>) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            serde_json::to_vec(&b).unwrap()
        }
        None => Vec::new(),
    };
    let res = client
        .request(req.body(Full::new(Bytes::from(bytes))).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
