//! The operator's kit against the real thing: a real Prometheus server
//! (the system's `prometheus`, installed by scripts/deps.sh) scrapes a real
//! `confab serve` under a short load of chat and push traffic; `promtool`
//! checks deploy/prometheus/alerts.yml; and every expression of the
//! Grafana dashboard (deploy/grafana/confab.json) and every alert's
//! measured part is evaluated through Prometheus' query API. An
//! expression that returns no series (a metric renamed, a label that does
//! not exist, a typo) fails the test: a dashboard panel saying "No data"
//! or an alert that can never fire is what this catches.

#[allow(dead_code)]
#[path = "push/relay.rs"]
mod relay;
#[allow(dead_code)]
#[path = "push/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use confab_client::Target;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as Http;
use hyper_util::rt::TokioExecutor;
use relay::{Relay, Reply};
use serde_json::Value;
use server::{free_port, Server};

const PATIENCE: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A Prometheus server on a temporary directory; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` as job "confab" every second and evaluates
    /// `rules` every second.
    fn start(target: std::net::SocketAddr, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: confab\n    static_configs:\n      - targets: ['{target}']\n",
                rules = rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus (scripts/deps.sh installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn get(&self, path_and_query: &str) -> Option<(u16, Value)> {
        let http: Http<_, Empty<Bytes>> = Http::builder(TokioExecutor::new()).build_http();
        let res = http
            .get(format!("{}{path_and_query}", self.url).parse().unwrap())
            .await
            .ok()?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// The series `expr` returns now.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let q: String = url_encode(expr);
        let (status, v) = self
            .get(&format!("/api/v1/query?query={q}"))
            .await
            .expect("prometheus answers");
        assert_eq!(status, 200, "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `expr` returns a series whose value passes `ok`.
    async fn wait_for(&self, expr: &str, ok: impl Fn(f64) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.get("/-/ready").await.map(|(s, _)| s) == Some(200) {
                let got = self.query(expr).await;
                if got.iter().any(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(&ok)
                }) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus never saw {expr}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr:` of the rules file, as written.
fn alert_exprs(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(|e| e.trim().to_owned())
        .collect()
}

/// An alert's measured part: its expression without the last comparison
/// at the top level (outside parentheses and braces).
fn measured(expr: &str) -> String {
    let bytes = expr.as_bytes();
    let mut depth = 0i32;
    let mut cut = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b'>' | b'<' | b'=' | b'!' if depth == 0 && i > 0 && bytes[i - 1] == b' ' => {
                cut = Some(i)
            }
            _ => {}
        }
    }
    let cut = cut.unwrap_or_else(|| panic!("{expr}: no comparison at the top level"));
    expr[..cut].trim().to_owned()
}

/// Every panel target's expression, with the dashboard's variables
/// replaced as Grafana would for "all nodes".
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_owned();
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let expr = expr
                .replace("$__rate_interval", "30s")
                .replace("$instance", ".+");
            out.push((title.clone(), expr));
        }
    }
    out
}

#[test]
fn the_measured_part_of_an_alert_drops_only_its_threshold() {
    assert_eq!(measured("up{job=\"confab\"} == 0"), "up{job=\"confab\"}");
    assert_eq!(
        measured("max by (instance) (a{q=\"x\"} / b) > 0.9"),
        "max by (instance) (a{q=\"x\"} / b)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_expression_has_series_from_a_node_under_load() {
    let rules = root().join("deploy/prometheus/alerts.yml");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/confab.json")).unwrap(),
    )
    .expect("the dashboard is JSON");

    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("running promtool (scripts/deps.sh installs it)");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // A node with a webhook push provider whose relay answers each phone
    // differently, so that every push outcome happens (sent after a
    // retry, the token gone, the notification rejected, no phone).
    let relay = Relay::start().await;
    let node = Server::start(&relay.url(), "").await;
    let prometheus = Prometheus::start(node.metrics_addr(), &rules);
    let ada = node.signup("ada").await;
    let phones = [
        ("bob", vec![Reply::status(503), Reply::status(200)]),
        ("cyd", vec![Reply::status(410)]),
        ("dia", vec![Reply::status(400)]),
    ];
    let mut dms = Vec::new();
    for (name, replies) in phones {
        let user = node.signup(name).await;
        let token = format!("https://relay.test/{name}");
        node.register(&user, "webhook", &token).await;
        relay.script(&token, replies);
        dms.push((node.open_dm(&ada, user.id).await, user));
    }
    // And a user with no phone at all: her pushes are dropped.
    let eve = node.signup("eve").await;
    dms.push((node.open_dm(&ada, eve.id).await, eve));
    let app = node.connect(&ada).await;
    for round in 0..20 {
        for (dm, _) in &dms {
            app.send(
                Target::Channel(confab_types::ChannelId(*dm)),
                format!("round {round}"),
            )
            .await
            .unwrap();
        }
    }
    // Every push settled one way or another before Bob comes online
    // (an online device cancels his pending pushes).
    prometheus
        .wait_for("sum(confab_push_notifications_failed_total)", |v| v >= 1.0)
        .await;
    prometheus
        .wait_for("sum(confab_push_notifications_sent_total)", |v| v >= 1.0)
        .await;
    // An online device too, for deliveries and their latency.
    let bob_app = node.connect(&dms[0].1).await;
    for round in 0..20 {
        app.send(
            Target::Channel(confab_types::ChannelId(dms[0].0)),
            format!("live {round}"),
        )
        .await
        .unwrap();
    }
    bob_app.close().await;

    prometheus
        .wait_for("sum(confab_messages_stored_total)", |v| v >= 100.0)
        .await;
    // Enough scrapes after the traffic for every rate window.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut empty = Vec::new();
    let mut checked = 0;
    for (title, expr) in dashboard_exprs(&dashboard) {
        checked += 1;
        if prometheus.query(&expr).await.is_empty() {
            empty.push(format!("panel {title:?}: {expr}"));
        }
    }
    let text = std::fs::read_to_string(&rules).unwrap();
    let alerts = alert_exprs(&text);
    assert_eq!(alerts.len(), 9, "every rule's expression was read");
    for expr in alerts {
        checked += 1;
        let part = measured(&expr);
        if prometheus.query(&part).await.is_empty() {
            empty.push(format!("alert: {part}"));
        }
    }
    assert!(checked >= 36, "only {checked} expressions checked");
    assert!(
        empty.is_empty(),
        "expressions with no series:\n{}",
        empty.join("\n")
    );
}
