//! The `confab-loadgen` binary against a real node (gateway threads,
//! RocksDB log, SQLite API store, TLS) on loopback: the smoke profile over
//! every transport must pass its own correctness ledger and write reports
//! a script and a person can read; `plan` and bad input behave.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use confab::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_confab-loadgen");

/// Runs against a node one at a time: a run opens many client sockets,
/// and their ephemeral ports could take the port a starting node has just
/// picked with `free_tcp_port`.
fn one_node_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static NODES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    NODES.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node on its own threads for the rest of the test process.
struct Node {
    /// Declared first: it stops before its data dir is removed.
    _server: confab::Node,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    api: u16,
    metrics: u16,
}

impl Node {
    fn start() -> Node {
        Node::start_with("")
    }

    /// A node with extra lines for its `[api]` section.
    fn start_with(api_extra: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (api, ws, quic, metrics) = (
            free_tcp_port(),
            free_tcp_port(),
            free_udp_port(),
            free_tcp_port(),
        );
        // Cheap password hashing: the smoke run signs up 20 users and the
        // hash's cost is not what this test is about. The send rate limit
        // is raised because the run's senders are random users.
        let toml = format!(
            r#"data_dir = "{dir}"
[api]
addr = "127.0.0.1:{api}"
token_secret = "the loadgen test's token secret, 32+ bytes"
password_memory_kib = 64
password_iterations = 1
{api_extra}
[gateway]
ws_addr = "127.0.0.1:{ws}"
quic_addr = "127.0.0.1:{quic}"
pin_cores = false
send_rate_per_s = 100000
send_burst = 100000
[metrics]
addr = "127.0.0.1:{metrics}"
[storage]
sync = "batch"
"#,
            dir = dir.path().display(),
        );
        let config: Config = toml::from_str(&toml).unwrap();
        config.validate().unwrap();
        let server = confab::Node::start(config).unwrap();
        let node = Node {
            _server: server,
            dir: dir.path().to_owned(),
            _dir: dir,
            api,
            metrics,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr: SocketAddr = ([127, 0, 0, 1], self.api).into();
        loop {
            assert!(Instant::now() < deadline, "the node did not start");
            if let Ok(mut s) = TcpStream::connect(addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cert(&self) -> PathBuf {
        std::fs::read_dir(self.dir.join("tls"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "crt"))
            .expect("the node's generated certificate")
    }

    fn run(&self, out: &Path, args: &[&str]) -> (std::process::Output, serde_json::Value) {
        let json = out.join("report.json");
        let output = Command::new(BIN)
            .arg("run")
            .arg("--api")
            .arg(format!("http://127.0.0.1:{}", self.api))
            .arg("--metrics")
            .arg(format!("http://127.0.0.1:{}/metrics", self.metrics))
            .arg("--ca")
            .arg(self.cert())
            .arg("--json")
            .arg(&json)
            .arg("--html")
            .arg(out.join("report.html"))
            .arg("--quiet")
            .args(args)
            .output()
            .unwrap();
        let report = std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        (output, report)
    }
}

fn u(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("report field {field}: {}", report[field]))
}

/// The run exited 0 and its stdout says so.
fn assert_succeeded(output: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("PASSED"), "{stdout}");
}

/// A clean ledger: every send acked, every delivery owed made, nothing lost,
/// repeated, skipped, reordered or corrupted, no error, and the fresh
/// devices of the final sync check missed nothing.
fn assert_clean(report: &serde_json::Value) {
    let sent = u(report, "sent");
    assert!(sent > 0, "{report}");
    assert_eq!(u(report, "acked"), sent, "{report}");
    assert_eq!(
        u(report, "delivered"),
        u(report, "expected_deliveries"),
        "{report}"
    );
    for zero in [
        "lost",
        "duplicated",
        "gaps",
        "out_of_order",
        "corrupted",
        "errors_total",
    ] {
        assert_eq!(u(report, zero), 0, "{zero}: {report}");
    }
    assert_eq!(u(&report["sync"], "missing"), 0, "{report}");
}

#[test]
fn smoke_profile_over_every_transport_passes_its_ledger() {
    let _one = one_node_at_a_time();
    let node = Node::start();
    let out = tempfile::tempdir().unwrap();
    let (output, report) = node.run(
        out.path(),
        &[
            "--profile",
            "smoke",
            "--transport",
            "mix",
            "--duration",
            "3",
        ],
    );
    assert_succeeded(&output);
    assert_clean(&report);

    // The report's fields, with values that mean the run did its job.
    for field in [
        "profile",
        "transport",
        "duration_s",
        "users",
        "connections",
        "sent",
        "acked",
        "delivered",
        "lost",
        "duplicated",
        "gaps",
        "errors",
        "msgs_per_s",
        "deliveries_per_s",
        "ack_p50_us",
        "ack_p99_us",
        "delivery_p50_us",
        "delivery_p99_us",
        "delivery_p999_us",
        "server_rss_bytes",
        "capacity",
    ] {
        assert!(!report[field].is_null(), "report lacks {field}: {report}");
    }
    assert_eq!(report["profile"], "smoke");
    assert_eq!(report["transport"], "mix");
    assert_eq!(u(&report, "users"), 20);
    // Every user has one or two devices, spread over ws, wss and quic.
    assert!(u(&report, "connections") >= 20);
    let urls = report["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 3, "{urls:?}");
    // 40 msgs/s for 4 s (warm-up included): a Poisson count, not exact.
    let sent = u(&report, "sent");
    assert!((60..=260).contains(&sent), "sent {sent}");
    let owed = u(&report, "expected_deliveries");
    assert!(
        owed >= sent,
        "every message has a recipient device: {owed} < {sent}"
    );
    assert!(u(&report, "ack_p99_us") >= u(&report, "ack_p50_us"));
    assert!(u(&report, "ack_p50_us") > 0);
    assert!(u(&report, "delivery_p50_us") > 0);
    assert!(u(&report, "server_rss_bytes") > 1 << 20);
    // What the measured window cost both sides, per message. At 40 msgs/s
    // each message carries the idle cost of its second, so only the
    // presence and sign of the figures is asserted here.
    let f = |name: &str| {
        report[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {report}"))
    };
    assert!((f("cpu_window_s") - 3.0).abs() < 0.5, "{report}");
    assert!(f("server_cpu_us_per_msg") > 0.0, "{report}");
    assert!(f("server_cpu_us_per_delivery") > 0.0, "{report}");
    assert!(f("server_cpu_us_per_delivery") <= f("server_cpu_us_per_msg"));
    assert!(f("loadgen_cpu_us_per_msg") > 0.0, "{report}");
    assert!(
        f("server_fsync_p99_us") > 0.0,
        "sync = batch fsyncs: {report}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("CPU µs per message: server"),
        "the summary prints the CPU figures"
    );
    // A fresh device per sampled user synced that user's whole inbox.
    assert_eq!(u(&report["sync"], "users"), 10);
    assert!(u(&report["sync"], "messages") > 0);
    assert!(u(&report["capacity"]["nodes"], "needed") >= 1);
    // One timeline entry per measured second.
    assert_eq!(report["timeline"].as_array().unwrap().len(), 3);

    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.matches("<svg").count() >= 3,
        "latency, throughput and connection plots"
    );
    assert!(!html.contains("<script"), "self-contained, no scripts");
    assert!(html.contains("server CPU µs per message"));
}

#[test]
fn churn_and_expiring_tokens_lose_nothing() {
    // Access tokens live 4 s, so each user's is refreshed several times
    // during the run, and each device's connection is dropped about every
    // 3 s: every reconnect needs a token that is still valid, resumes the
    // inbox from the device's cursor and sends its unacked messages again.
    let _one = one_node_at_a_time();
    let node = Node::start_with("access_token_ttl_secs = 4");
    let out = tempfile::tempdir().unwrap();
    let (output, report) = node.run(
        out.path(),
        &[
            "--profile",
            "smoke",
            "--transport",
            "mix",
            "--duration",
            "6",
            "--reconnects-per-device-hour",
            "1200",
        ],
    );
    assert_succeeded(&output);
    // Devices that were away got what they missed.
    assert_clean(&report);
    let forced = u(&report, "forced_reconnects");
    assert!(
        forced >= 20,
        "churn dropped only {forced} connections: {report}"
    );
    // A drop asked for while the device's last one is still being handled
    // changes nothing, so the devices saw at most `forced` of them.
    let reconnects = u(&report, "reconnects");
    assert!(reconnects >= 20, "only {reconnects} reconnects: {report}");
    // 20 users, over 7 s of traffic after sign-up, a refresh every 1.6 to
    // 2.4 s.
    let refreshes = u(&report, "token_refreshes");
    assert!(
        refreshes >= 40,
        "only {refreshes} token refreshes: {report}"
    );
}

/// Heartbeat frames the node has received, from its `/metrics`.
fn heartbeats_received(metrics: u16) -> f64 {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("confab_frames_in_total{") && l.contains("type=\"heartbeat\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn idle_holds_bare_connections_that_heartbeat_and_reports_their_cost() {
    let _one = one_node_at_a_time();
    let node = Node::start();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("idle.json");
    let before = heartbeats_received(node.metrics);
    // 300 connections, 100 per source address so that several loopback
    // addresses are used, 7 handshakes in flight (a window refilled 43
    // times, the last one partly), heartbeating every 0.2 s.
    let output = Command::new(BIN)
        .args([
            "idle",
            "--connections",
            "300",
            "--hold",
            "1",
            "--heartbeat",
            "0.2",
        ])
        .args(["--per-source-ip", "100", "--in-flight", "7"])
        .args(["--api", &format!("http://127.0.0.1:{}", node.api)])
        .args([
            "--metrics",
            &format!("http://127.0.0.1:{}/metrics", node.metrics),
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("300 of 300 sessions opened"), "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["opened"], 300);
    assert_eq!(r["up_after_hold"], 300, "{r}");
    for field in [
        "server_bytes_per_connection",
        "loadgen_bytes_per_connection",
        "server_cores",
        "opened_per_s",
    ] {
        assert!(
            r[field].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0),
            "{field}: {r}"
        );
    }
    // Every device heartbeated all along (13 s at 5 a second each would be
    // about 19,500; allow for the opening and the schedule).
    let heartbeats = heartbeats_received(node.metrics) - before;
    assert!(
        heartbeats >= 300.0 * 20.0,
        "only {heartbeats} heartbeats arrived"
    );
}

#[test]
fn plan_prints_the_deployment_arithmetic() {
    let out = Command::new(BIN)
        .args(["plan", "--profile", "dau50m", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plan"]["dau"], 50_000_000);
    assert_eq!(v["plan"]["messages_per_day"].as_f64().unwrap(), 2.0e9);
    assert!(v["plan"]["nodes"]["needed"].as_u64().unwrap() >= 1);
    assert_eq!(v["slice"]["users"], 5000);

    let text = Command::new(BIN).args(["plan"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("nodes needed"), "{text}");
    assert!(text.contains("storage/day"), "{text}");
}

#[test]
fn plan_sizes_nodes_from_what_a_connection_costs() {
    let plan = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["plan", "--profile", "dau50m", "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // 16 GiB, 8 of them kept: 8 GiB over 8 KiB a connection (user +
    // kernel) is 1,048,576 connections, below the open-file limit.
    let small = plan(&[
        "--node-memory-gib",
        "16",
        "--conn-user-bytes",
        "4096",
        "--conn-kernel-bytes",
        "4096",
    ]);
    let n = &small["node_connections"];
    assert_eq!(n["holds"].as_f64().unwrap(), 1_048_576.0);
    assert_eq!(n["bound_by"], "memory");
    // 7.5 million connections at the peak, nodes planned at 60 % use.
    assert_eq!(small["plan"]["nodes"]["for_connections"], 12);
    assert_eq!(
        small["plan"]["nodes"]["node_connections"].as_f64().unwrap(),
        1_048_576.0
    );
    // QUIC's measured connection costs more memory and more CPU than ws's:
    // fewer per node, more nodes.
    let ws = plan(&["--conn-transport", "ws", "--open-files", "100000000"]);
    let quic = plan(&["--conn-transport", "quic", "--open-files", "100000000"]);
    let holds = |v: &serde_json::Value| v["node_connections"]["holds"].as_f64().unwrap();
    assert!(
        holds(&quic) < holds(&ws) / 3.0,
        "{} vs {}",
        holds(&quic),
        holds(&ws)
    );
    assert!(
        quic["plan"]["nodes"]["for_connections"].as_u64()
            > ws["plan"]["nodes"]["for_connections"].as_u64()
    );
}

#[test]
fn plan_and_idle_refuse_impossible_input_with_a_clear_message() {
    for (args, says) in [
        (
            &["--node-memory-gib", "4", "--node-reserved-gib", "8"][..],
            "--node-memory-gib must exceed",
        ),
        (
            &["--node-cores", "0"][..],
            "--node-cores and --open-files must be positive",
        ),
        (
            &["--heartbeat-cpu-share", "1.5"][..],
            "--heartbeat-cpu-share must be in",
        ),
    ] {
        let out = Command::new(BIN).arg("plan").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Nothing listening: the idle mode says so instead of hanging.
    let port = free_tcp_port();
    let out = Command::new(BIN)
        .args([
            "idle",
            "--connections",
            "1",
            "--api",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a confab server listening at"), "{err}");
    // No window, no handshake: refused before anything is sent.
    let out = Command::new(BIN)
        .args(["idle", "--in-flight", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--in-flight"), "{err}");
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let out = Command::new(BIN)
        .args(["run", "--profile", "/no/such/profile.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a built-in profile"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    let text = String::from_utf8(
        Command::new(BIN)
            .args(["profile", "smoke"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(&path, text.replace("duration_s", "duraton_s")).unwrap();
    let out = Command::new(BIN)
        .args(["plan", "--profile", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("duraton_s"), "{err}");

    // Nothing listens on port 1: the run says where it looked.
    let out = Command::new(BIN)
        .args(["run", "--api", "http://127.0.0.1:1", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
}
