//! The HTTP API calls the terminal client makes (docs/api.md): accounts,
//! the channel list, user lookup, DMs, friends, read marks and gateway
//! discovery. Plain `http://` only, and only to a loopback address: the
//! login sends the password, which must not cross a network in clear (a
//! remote node is reached through a tunnel to a local port).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ChatError;
use crate::options::is_loopback_url;

/// How long one API call may take before the client gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// What signup, login and refresh return.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// The account.
    pub user_id: u64,
    /// The bearer token for the API and the gateway.
    pub access_token: String,
    /// Trades for a new pair before the access token expires.
    pub refresh_token: String,
    /// The access token's lifetime, in seconds.
    pub expires_in: u64,
}

/// A user's public profile.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub user_id: u64,
    /// The unique login name.
    pub username: String,
    /// The name shown to others.
    pub display_name: String,
}

/// One of the caller's channels, from `GET /v1/channels`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel's id (the gateway's too).
    pub channel_id: u64,
    /// `dm` or `group`.
    pub kind: String,
    /// The other user of a DM.
    #[serde(default)]
    pub peer_id: Option<u64>,
    /// A group's name.
    #[serde(default)]
    pub name: Option<String>,
    /// How many members it has.
    #[serde(default)]
    pub member_count: u32,
}

/// The caller's accepted friends, from `GET /v1/friends` (the pending
/// requests it also lists are not shown, and serde skips them).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Friends {
    /// Accepted friends.
    pub friends: Vec<User>,
}

/// A DM channel, from `POST /v1/dms` (the client needs only its id).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Dm {
    /// The DM's channel.
    pub channel_id: u64,
}

/// One member's read mark, from `GET /v1/channels/{id}/receipts`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct ReadMark {
    /// The member.
    pub user_id: u64,
    /// Read up to and including this sequence.
    pub read_up_to: u64,
}

/// Where the gateway is, from `GET /v1/gateway`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Gateway {
    /// `ws://` for clients the gateway serves plain WebSocket, else `wss://`.
    pub websocket_url: String,
    /// The same port over TLS.
    pub secure_websocket_url: String,
    /// `host:port` (UDP) for QUIC.
    pub quic_addr: String,
}

/// A client of one API base URL, carrying the session's access token once
/// logged in. Clones share the token, so a refresh reaches them all.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    token: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    /// A client for `base` (for example `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Api, ChatError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(ChatError::Usage(format!(
                "the API URL must be http://host:port, not {base:?}"
            )));
        }
        if !is_loopback_url(&base) {
            return Err(ChatError::Usage(format!(
                "refusing the API at {base}: plain http:// to a host other than this \
                 machine would send the password across the network in clear \
                 (reach the node through a tunnel to a loopback port, for example \
                 ssh -L 8080:127.0.0.1:8080)"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Api {
            base,
            http,
            token: Arc::new(Mutex::new(None)),
        })
    }

    /// Uses `token` for the authenticated calls from now on.
    pub fn set_token(&self, token: &str) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_owned());
    }

    fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ChatError> {
        let what = format!("{method} {path}");
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = self.token() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| ChatError::Http(format!("{what}: {e}")))?;
        let answer = async {
            let resp = self.http.request(req).await.map_err(|e| {
                ChatError::Http(format!(
                    "{what}: cannot reach the API at {}: {e}",
                    self.base
                ))
            })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ChatError::Http(format!("{what}: {e}")))?
                .to_bytes();
            Ok::<_, ChatError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, answer)
            .await
            .map_err(|_| ChatError::Http(format!("{what}: no answer in {CALL_TIMEOUT:?}")))??;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let field = |name: &str| {
                v["error"][name]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| status.to_string())
            };
            return Err(ChatError::Api {
                status: status.as_u16(),
                code: field("code"),
                message: field("message"),
            });
        }
        // 204 and friends: nothing to decode, `()` takes null.
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| ChatError::Http(format!("{what}: unexpected answer: {e}")))
    }

    /// `POST /v1/signup`: a new account, logged in.
    pub async fn signup(&self, username: &str, password: &str) -> Result<Tokens, ChatError> {
        let body = json!({"username": username, "password": password});
        self.call(Method::POST, "/v1/signup", Some(body)).await
    }

    /// `POST /v1/login`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Tokens, ChatError> {
        let body = json!({"username": username, "password": password});
        self.call(Method::POST, "/v1/login", Some(body)).await
    }

    /// `POST /v1/token/refresh`: a new token pair (the old refresh token
    /// is retired).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ChatError> {
        let body = json!({ "refresh_token": refresh_token });
        self.call(Method::POST, "/v1/token/refresh", Some(body))
            .await
    }

    /// `GET /v1/users/{id}`.
    pub async fn user(&self, user_id: u64) -> Result<User, ChatError> {
        self.call(Method::GET, &format!("/v1/users/{user_id}"), None)
            .await
    }

    /// `GET /v1/users?prefix=&limit=`: usernames starting with `prefix`.
    pub async fn users_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<User>, ChatError> {
        #[derive(Deserialize)]
        struct Users {
            users: Vec<User>,
        }
        // The username alphabet needs no percent-encoding; anything else
        // is refused here rather than sent malformed.
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        {
            return Err(ChatError::Usage(format!("{prefix:?} is not a username")));
        }
        let path = format!("/v1/users?prefix={prefix}&limit={limit}");
        Ok(self.call::<Users>(Method::GET, &path, None).await?.users)
    }

    /// `GET /v1/channels`.
    pub async fn channels(&self) -> Result<Vec<ChannelInfo>, ChatError> {
        #[derive(Deserialize)]
        struct Channels {
            channels: Vec<ChannelInfo>,
        }
        Ok(self
            .call::<Channels>(Method::GET, "/v1/channels", None)
            .await?
            .channels)
    }

    /// `POST /v1/dms`: the DM with `user_id`, created on first use.
    pub async fn open_dm(&self, user_id: u64) -> Result<Dm, ChatError> {
        let body = json!({ "user_id": user_id });
        self.call(Method::POST, "/v1/dms", Some(body)).await
    }

    /// `GET /v1/friends`.
    pub async fn friends(&self) -> Result<Friends, ChatError> {
        self.call(Method::GET, "/v1/friends", None).await
    }

    /// `POST /v1/friends/{id}`: a friend request (or the acceptance of
    /// theirs).
    pub async fn befriend(&self, user_id: u64) -> Result<(), ChatError> {
        let _: Value = self
            .call(Method::POST, &format!("/v1/friends/{user_id}"), None)
            .await?;
        Ok(())
    }

    /// `GET /v1/channels/{id}/receipts`: every member's read mark.
    pub async fn receipts(&self, channel_id: u64) -> Result<Vec<ReadMark>, ChatError> {
        #[derive(Deserialize)]
        struct Receipts {
            receipts: Vec<ReadMark>,
        }
        let path = format!("/v1/channels/{channel_id}/receipts");
        Ok(self
            .call::<Receipts>(Method::GET, &path, None)
            .await?
            .receipts)
    }

    /// `GET /v1/gateway`: where to connect.
    pub async fn gateway(&self) -> Result<Gateway, ChatError> {
        self.call(Method::GET, "/v1/gateway", None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_http_is_refused_beyond_this_machine() {
        assert!(Api::new("http://127.0.0.1:8080").is_ok());
        assert!(Api::new("http://localhost:8080/").is_ok());
        assert!(Api::new("http://[::1]:8080").is_ok());
        let err = Api::new("http://chat.example.com:8080").unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
        assert!(Api::new("https://chat.example.com").is_err());
    }

    #[test]
    fn answers_with_fields_the_client_does_not_read_still_decode() {
        let friends: Friends = serde_json::from_str(
            r#"{"friends":[{"user_id":2,"username":"bob","display_name":"Bob"}],
                "incoming":[],"outgoing":[]}"#,
        )
        .unwrap();
        assert_eq!(friends.friends.len(), 1);
        let dm: Dm =
            serde_json::from_str(r#"{"channel_id":5,"user_id":2,"created":true}"#).unwrap();
        assert_eq!(dm.channel_id, 5);
    }
}
