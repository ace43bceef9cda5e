//! The HTTP API as the load generator uses it: accounts, friends, DMs and
//! groups are made exactly as an app makes them (docs/api.md), so setting
//! up a run also exercises the API.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::prom;

/// A signed-up virtual user.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its user id.
    pub user_id: u64,
    /// Its access token as signed up; the run's refresher keeps newer
    /// ones (see `run::Tokens`).
    pub token: String,
    /// The refresh token that came with it.
    pub refresh_token: String,
    /// The access token's lifetime.
    pub expires_in: Duration,
}

/// What `POST /v1/token/refresh` returns.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new access token.
    pub token: String,
    /// The new refresh token (the old one is retired).
    pub refresh_token: String,
    /// The new access token's lifetime.
    pub expires_in: Duration,
}

/// Where the gateway is, from `GET /v1/gateway`.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// `ws://` (loopback) or `wss://` URL.
    pub websocket_url: String,
    /// `wss://` URL on the same port.
    pub secure_websocket_url: String,
    /// QUIC `host:port`.
    pub quic_addr: String,
    /// In a cluster, every live node (least loaded first), each with the
    /// same three fields; empty from a single node.
    #[serde(default)]
    pub gateways: Vec<Gateway>,
}

/// One node of a cluster, as discovery lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Gateway {
    /// `ws://` (loopback) or `wss://` URL.
    pub websocket_url: String,
    /// `wss://` URL on the same port.
    pub secure_websocket_url: String,
    /// QUIC `host:port`.
    pub quic_addr: String,
}

/// An HTTP/1.1 client for one API base URL.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    /// A client for `base` (for example `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Api> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--api must be an http:// URL, not {base:?}");
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Api { base, http })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let url = if path.starts_with("http://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = Request::builder().method(method.clone()).uri(&url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&v)?))
            }
            None => Full::new(Bytes::new()),
        };
        let resp =
            tokio::time::timeout(Duration::from_secs(30), self.http.request(req.body(body)?))
                .await
                .map_err(|_| anyhow!("{method} {url}: no answer in 30 s"))?
                .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    async fn expect(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let (status, value) = self.call(method.clone(), path, token, body).await?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {value}");
        }
        Ok(value)
    }

    /// `POST /v1/signup`.
    pub async fn signup(&self, username: &str, password: &str) -> Result<Account> {
        let v = self
            .expect(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await?;
        let tokens = tokens(&v, "signup")?;
        Ok(Account {
            user_id: field_u64(&v, "user_id")?,
            token: tokens.token,
            refresh_token: tokens.refresh_token,
            expires_in: tokens.expires_in,
        })
    }

    /// Signs up `n` users named `{prefix}{i}` with one password, eight
    /// requests in flight, in order.
    pub async fn signup_many(
        &self,
        n: usize,
        prefix: &str,
        password: &str,
    ) -> Result<Vec<Account>> {
        use futures_util::stream::{self, StreamExt};
        stream::iter(0..n)
            .map(|i| {
                let name = format!("{prefix}{i}");
                async move { self.signup(&name, password).await }
            })
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// `POST /v1/token/refresh`: a new access token (and refresh token)
    /// before the old one expires, as an app does.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Refreshed> {
        let v = self
            .expect(
                Method::POST,
                "/v1/token/refresh",
                None,
                Some(json!({ "refresh_token": refresh_token })),
            )
            .await?;
        tokens(&v, "refresh")
    }

    /// `POST /v1/friends/{b}` as `a`, then `POST /v1/friends/{a}/accept`
    /// as `b`.
    pub async fn befriend(&self, a: &Account, b: &Account) -> Result<()> {
        self.expect(
            Method::POST,
            &format!("/v1/friends/{}", b.user_id),
            Some(&a.token),
            None,
        )
        .await?;
        self.expect(
            Method::POST,
            &format!("/v1/friends/{}/accept", a.user_id),
            Some(&b.token),
            None,
        )
        .await?;
        Ok(())
    }

    /// `POST /v1/dms`: the DM channel of `a` and `b`.
    pub async fn dm(&self, a: &Account, b: &Account) -> Result<u64> {
        let v = self
            .expect(
                Method::POST,
                "/v1/dms",
                Some(&a.token),
                Some(json!({"user_id": b.user_id})),
            )
            .await?;
        field_u64(&v, "channel_id")
    }

    /// `POST /v1/groups` by `owner` with `members`.
    pub async fn group(&self, owner: &Account, name: &str, members: &[u64]) -> Result<u64> {
        let v = self
            .expect(
                Method::POST,
                "/v1/groups",
                Some(&owner.token),
                Some(json!({"name": name, "members": members})),
            )
            .await?;
        field_u64(&v, "channel_id")
    }

    /// One page of a channel's history, newest first from `before` (the
    /// latest without it): `(seq, text)` in ascending order, and whether
    /// older messages remain.
    pub async fn history_page(
        &self,
        reader: &Account,
        channel: u64,
        before: Option<u64>,
    ) -> Result<(Vec<(u64, String)>, bool)> {
        let mut path = format!("/v1/channels/{channel}/messages?limit=1000");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let v = self
            .expect(Method::GET, &path, Some(&reader.token), None)
            .await?;
        let messages = v["messages"]
            .as_array()
            .ok_or_else(|| anyhow!("history without messages: {v}"))?
            .iter()
            .map(|m| {
                let seq = field_u64(m, "seq")?;
                let text = m["text"].as_str().unwrap_or_default().to_owned();
                Ok((seq, text))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((messages, v["has_more"].as_bool().unwrap_or(false)))
    }

    /// `GET /v1/gateway`.
    pub async fn discovery(&self) -> Result<Discovery> {
        let v = self.expect(Method::GET, "/v1/gateway", None, None).await?;
        Ok(serde_json::from_value(v)?)
    }

    /// The server's resident memory and CPU so far, from its Prometheus
    /// endpoint (`process_resident_memory_bytes`,
    /// `process_cpu_seconds_total`).
    pub async fn server_process(&self, metrics_url: &str) -> Result<ServerProcess> {
        let text = self.metrics_text(metrics_url).await?;
        let metric = |name: &str| {
            prom::value(&text, name).ok_or_else(|| anyhow!("{metrics_url} has no {name}"))
        };
        Ok(ServerProcess {
            rss_bytes: metric("process_resident_memory_bytes")? as u64,
            cpu_seconds: metric("process_cpu_seconds_total")?,
            fsync_buckets: prom::buckets(&text, "confab_storage_fsync_seconds"),
        })
    }
}

impl Api {
    /// The server's `/metrics` page.
    pub async fn metrics_text(&self, metrics_url: &str) -> Result<String> {
        let (status, v) = self.call(Method::GET, metrics_url, None, None).await?;
        if !status.is_success() {
            bail!("GET {metrics_url}: {status}");
        }
        Ok(v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()))
    }
}

/// One reading of the server's process series.
#[derive(Debug, Clone)]
pub struct ServerProcess {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    /// The WAL fsync histogram: (upper bound in seconds, cumulative count).
    pub fsync_buckets: Vec<(f64, f64)>,
}

fn tokens(v: &Value, what: &str) -> Result<Refreshed> {
    let text = |field: &str| -> Result<String> {
        Ok(v[field]
            .as_str()
            .ok_or_else(|| anyhow!("{what} answer without {field}: {v}"))?
            .to_owned())
    };
    Ok(Refreshed {
        token: text("access_token")?,
        refresh_token: text("refresh_token")?,
        expires_in: Duration::from_secs(field_u64(v, "expires_in")?),
    })
}

fn field_u64(v: &Value, name: &str) -> Result<u64> {
    v[name]
        .as_u64()
        .ok_or_else(|| anyhow!("answer without {name}: {v}"))
}
