//! The `confab` command as an operator meets it: version, help, config
//! checking, refusal of bad input with exit code 2, and a `serve` that
//! answers on its ports and exits cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn confab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
    // The environment of whoever runs the tests must not leak into them.
    for (key, _) in std::env::vars() {
        if key.starts_with("CONFAB_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(args: &[&str]) -> Output {
    confab().args(args).output().expect("running confab")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("confab "), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");

    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["check-config", "--help"],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    let out = run(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--data-dir",
        "--api-addr",
        "--ws-addr",
        "--quic-addr",
        "--metrics-addr",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn bad_flags_are_one_line_errors_with_exit_2() {
    for args in [
        &["serve", "--no-such-flag"][..],
        &["serve", "--api-addr", "not-an-address"],
        &["serve", "--storage-sync", "sometimes"],
        &["frobnicate"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let out = run(&["serve", "--api-addr", "not-an-address"]);
    assert!(stderr(&out).contains("--api-addr"), "{}", stderr(&out));
}

#[test]
fn bad_environment_value_is_refused() {
    let out = confab()
        .args(["serve"])
        .env("CONFAB_METRICS_ADDR", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("metrics-addr"), "{}", stderr(&out));
}

#[test]
fn check_config_accepts_good_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "data_dir = \"/var/lib/confab\"\n[api]\naddr = \"127.0.0.1:18080\"\n[storage]\nsync = \"interval:5\"\n",
    )
    .unwrap();
    let out = run(&["check-config", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let effective = String::from_utf8(out.stdout).unwrap();
    assert!(effective.contains("127.0.0.1:18080"), "{effective}");
    assert!(effective.contains("interval:5"), "{effective}");

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[api]\nadr = \"127.0.0.1:1\"\n").unwrap();
    let out = run(&["check-config", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("adr"), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );

    let out = run(&[
        "check-config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (api, ws, quic, metrics) = (free_port(), free_port(), free_port(), free_port());
    let api_addr: SocketAddr = ([127, 0, 0, 1], api).into();
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], metrics).into();
    let mut server = Server(
        confab()
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--api-addr", &api_addr.to_string()])
            .args(["--ws-addr", &format!("127.0.0.1:{ws}")])
            .args(["--quic-addr", &format!("127.0.0.1:{quic}")])
            .args(["--metrics-addr", &metrics_addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        if let Some(body) = http_get(api_addr, "/healthz") {
            break body;
        }
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "confab serve exited early"
        );
        assert!(
            Instant::now() < deadline,
            "confab serve never answered /healthz"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = http_get(api_addr, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let scrape = http_get(metrics_addr, "/metrics").unwrap();
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    assert!(scrape.contains("confab_build_info"), "{scrape}");
    // The standard process series, through the prometheus crate.
    for series in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(scrape.contains(series), "no {series} in {scrape}");
    }

    assert!(scrape.contains("confab_connections{core=\"0\""), "{scrape}");
    for histogram in [
        "confab_store_latency_seconds_bucket",
        "confab_delivery_latency_seconds_bucket",
        "confab_fanout_recipients_bucket",
        "confab_storage_fsync_seconds_bucket",
    ] {
        assert!(scrape.contains(histogram), "no {histogram} in {scrape}");
    }

    // The gateway answers WebSocket upgrades on its own port.
    let mut ws = TcpStream::connect(("127.0.0.1", ws)).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        ws,
        "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: confab.v1\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = ws.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");

    // The message log lives in the data dir.
    assert!(dir.path().join("log").is_dir());

    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "confab serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "SIGTERM must be a clean exit");
}
