//! The real `confab serve` process for the push tests, and what an app does
//! against it: HTTP API calls and SDK connections.

use confab_types::DeviceId;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use confab_client::{Client, ClientConfig, ClientEvent, Events, SendFuture, Target};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Http;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::relay::SECRET;

const PATIENCE: Duration = Duration::from_secs(30);

/// A port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct User {
    pub id: u64,
    pub access: String,
}

/// An app on one device: the SDK client and its event stream.
pub struct App {
    pub client: Client,
    pub events: Events,
}

impl App {
    pub fn send(&self, target: Target, text: impl Into<confab_client::Text>) -> SendFuture {
        self.client.send(target, text)
    }

    pub async fn close(&self) {
        self.client.close().await;
    }
}

pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    api: SocketAddr,
    ws: SocketAddr,
    metrics: SocketAddr,
    http: Http<HttpConnector, Full<Bytes>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl Server {
    /// A node whose `[push]` section has `push_extra` lines and a webhook
    /// provider posting to `relay_url`.
    pub async fn start(relay_url: &str, push_extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = |_| -> SocketAddr { ([127, 0, 0, 1], free_port()).into() };
        let (api, ws, quic, metrics) = (port(0), port(1), port(2), port(3));
        let config = dir.path().join("confab.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
[api]
addr = "{api}"
password_memory_kib = 64
password_iterations = 1
[gateway]
ws_addr = "{ws}"
quic_addr = "{quic}"
cores = 2
pin_cores = false
[metrics]
addr = "{metrics}"
[push]
retry_base_ms = 100
retry_max_ms = 400
{push_extra}
[push.webhook]
secret = "{SECRET}"
url = "{relay_url}"
"#,
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let http = Http::builder(TokioExecutor::new()).build_http();
        let mut server = Server {
            child: None,
            dir,
            config,
            api,
            ws,
            metrics,
            http,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("confab.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("CONFAB_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("confab exited with {status}:\n{}", self.log());
                }
            }
            if let Ok((200, _)) = self.request("GET", "/readyz", None, None).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "confab never became ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("confab.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the node again on the same data and ports.
    pub async fn restart(mut self) -> Server {
        self.kill9();
        self.spawn().await;
        self
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.api, path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                serde_json::to_vec(&b).unwrap()
            }
            None => Vec::new(),
        };
        let res = self
            .http
            .request(req.body(Full::new(Bytes::from(bytes))).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<&User>,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let (status, value) = self
            .request(method, path, user.map(|u| u.access.as_str()), body)
            .await
            .unwrap();
        assert_eq!(status, want, "{method} {path}: {value}");
        value
    }

    pub async fn signup(&self, name: &str) -> User {
        let v = self
            .call(
                "POST",
                "/v1/signup",
                None,
                Some(json!({"username": name, "password": format!("password-{name}")})),
                201,
            )
            .await;
        User {
            id: v["user_id"].as_u64().unwrap(),
            access: v["access_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn register(&self, user: &User, platform: &str, token: &str) -> u64 {
        let v = self
            .call(
                "POST",
                "/v1/devices",
                Some(user),
                Some(json!({"platform": platform, "push_token": token})),
                200,
            )
            .await;
        v["device_id"].as_u64().unwrap()
    }

    pub async fn devices(&self, user: &User) -> Vec<Value> {
        let v = self.call("GET", "/v1/devices", Some(user), None, 200).await;
        v["devices"].as_array().unwrap().clone()
    }

    pub async fn open_dm(&self, user: &User, other: u64) -> u64 {
        let v = self
            .call(
                "POST",
                "/v1/dms",
                Some(user),
                Some(json!({"user_id": other})),
                201,
            )
            .await;
        v["channel_id"].as_u64().unwrap()
    }

    pub async fn mute(&self, user: &User, channel: u64, muted: bool) {
        self.call(
            "PUT",
            &format!("/v1/channels/{channel}/mute"),
            Some(user),
            Some(json!({"muted": muted})),
            200,
        )
        .await;
    }

    /// Where the node serves `/metrics` (for a scraper; the push tests
    /// read the text through [`Server::metrics`]).
    #[allow(dead_code)]
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    pub async fn metrics(&self) -> String {
        let res = self
            .http
            .get(format!("http://{}/metrics", self.metrics).parse().unwrap())
            .await
            .unwrap();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// A device of `user` connected over WebSocket, past its welcome.
    pub async fn connect(&self, user: &User) -> App {
        let url = format!("ws://{}/v1/ws", self.ws);
        let (client, mut events) =
            Client::connect(ClientConfig::new(url, user.access.clone(), DeviceId(1))).unwrap();
        loop {
            match tokio::time::timeout(PATIENCE, events.recv()).await {
                Ok(Some(ClientEvent::Connected(_))) => break,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the client closed:\n{}", self.log()),
                Err(_) => panic!("no welcome within {PATIENCE:?}"),
            }
        }
        App { client, events }
    }
}

/// The next chat message an app receives.
pub async fn next_message(events: &mut Events) {
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await {
            Ok(Some(ClientEvent::Message(_))) => return,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the client closed"),
            Err(_) => panic!("no message within {PATIENCE:?}"),
        }
    }
}

/// The value of one series in a scrape (0 when absent).
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .map_or(0, |v| v as u64)
}
