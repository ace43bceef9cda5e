//! What the examples share: just enough of the HTTP API (docs/api.md) to
//! sign up or log in and create a group (the SDK speaks only the gateway
//! protocol; accounts live behind the HTTP API, so an application needs
//! both), and the state an installation keeps between runs.

// Each example uses only part of this module.
#![allow(dead_code)]

use bytes::Bytes;
use confab_client::{DeviceId, InboxSeq};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// Where the examples find the server: `make run` serves the API on 8080
/// and WebSocket sessions on 8081. Override with `CONFAB_API` and
/// `CONFAB_URL` (e.g. `quic://127.0.0.1:8443`, with `CONFAB_CA` naming the
/// server's certificate file).
pub fn endpoints() -> (String, String) {
    let api = std::env::var("CONFAB_API").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let url = std::env::var("CONFAB_URL").unwrap_or_else(|_| "ws://127.0.0.1:8081/v1/ws".into());
    (api, url)
}

/// A logged-in account.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: u64,
    pub access_token: String,
}

pub struct Api {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<(StatusCode, Value), Box<dyn std::error::Error>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(Bytes::from(body.to_string())))?;
        let resp = self.http.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        Ok((status, value))
    }

    /// Signs up, or logs in if the username is taken (so the examples can
    /// run again against the same server).
    pub async fn account(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Account, Box<dyn std::error::Error>> {
        let body = json!({"username": username, "password": password});
        let (status, value) = self
            .call(Method::POST, "/v1/signup", None, body.clone())
            .await?;
        let value = if status == StatusCode::CONFLICT {
            let (status, value) = self.call(Method::POST, "/v1/login", None, body).await?;
            if !status.is_success() {
                return Err(format!("login {username}: {status} {value}").into());
            }
            value
        } else if status.is_success() {
            value
        } else {
            return Err(format!("signup {username}: {status} {value}").into());
        };
        Ok(Account {
            user_id: value["user_id"].as_u64().ok_or("no user_id")?,
            access_token: value["access_token"]
                .as_str()
                .ok_or("no access_token")?
                .to_owned(),
        })
    }

    /// Creates a group owned by `owner` with the other members; returns its
    /// channel id.
    pub async fn create_group(
        &self,
        owner: &Account,
        name: &str,
        members: &[u64],
    ) -> Result<u64, Box<dyn std::error::Error>> {
        let (status, value) = self
            .call(
                Method::POST,
                "/v1/groups",
                Some(&owner.access_token),
                json!({"name": name, "members": members}),
            )
            .await?;
        if !status.is_success() {
            return Err(format!("create group: {status} {value}").into());
        }
        Ok(value["channel_id"].as_u64().ok_or("no channel_id")?)
    }
}

/// What an installation keeps between runs so that it resumes without a
/// gap or a repeat: the inbox cursor and the next client message id. Kept
/// in a small JSON file in the temporary directory, per account.
#[derive(Debug, Clone, Copy)]
pub struct Saved {
    pub cursor: u64,
    pub next_client_msg_id: u64,
}

fn saved_path(username: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("confab-example-{username}.json"))
}

impl Saved {
    /// The saved state, or a new installation's.
    pub fn load(username: &str) -> Saved {
        let fresh = Saved {
            cursor: 0,
            next_client_msg_id: 1,
        };
        let Ok(text) = std::fs::read_to_string(saved_path(username)) else {
            return fresh;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            return fresh;
        };
        Saved {
            cursor: v["cursor"].as_u64().unwrap_or(0),
            next_client_msg_id: v["next_client_msg_id"].as_u64().unwrap_or(1).max(1),
        }
    }

    /// Saves it (best effort: an example should not fail over this).
    pub fn store(&self, username: &str) {
        let v = json!({"cursor": self.cursor, "next_client_msg_id": self.next_client_msg_id});
        let _ = std::fs::write(saved_path(username), v.to_string());
    }

    /// A client configuration that resumes from this state.
    pub fn config(&self, url: &str, account: &Account) -> confab_client::ClientConfig {
        // One installation per account in these examples: device 1.
        let mut config = confab_client::ClientConfig::new(url, &account.access_token, DeviceId(1));
        // `confab serve` without a configured certificate generates a
        // self-signed one into <data dir>/tls/self-signed.crt: trust it.
        if let Ok(ca) = std::env::var("CONFAB_CA") {
            config.tls = confab_client::TlsOptions::new().add_root_pem_file(ca);
        }
        config.inbox_cursor = InboxSeq(self.cursor);
        config.first_client_msg_id = self.next_client_msg_id;
        config
    }
}
