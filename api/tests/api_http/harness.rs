//! A real API server on 127.0.0.1:0 over a real store (SQLite in a temp
//! dir, or a fresh schema of the PostgreSQL server named by
//! `CONFAB_TEST_PG_URL`) and a real RocksDB message log, driven by a real
//! HTTP client (hyper).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use confab_api::ratelimit::RateLimit;
use confab_api::{ApiSettings, ApiState};
use confab_directory::auth::{PasswordParams, TokenSigner};
use confab_directory::events::EventBus;
use confab_directory::store::Store;
use confab_storage::{LogConfig, RocksLog, SyncPolicy};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The HMAC key of every test server, so tests can mint tokens (expired
/// ones, for instance).
pub const SECRET: &[u8] = b"confab-test-secret-0123456789abcdef";

/// Which relational backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The PostgreSQL server's URL; its absence fails the test (the PostgreSQL
/// half must never be skipped silently).
pub fn pg_url() -> String {
    match std::env::var("CONFAB_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CONFAB_TEST_PG_URL is not set: the PostgreSQL half of the API suite needs a server. \
             Run `make test` (it starts one with scripts/postgres.sh), or \
             `export CONFAB_TEST_PG_URL=\"$(scripts/postgres.sh)\"` before `cargo test`."
        ),
    }
}

/// A fresh, empty schema on the test server, and the URL that selects it.
pub async fn pg_schema_url() -> String {
    let base = pg_url();
    confab_directory::store::scratch_schema(&base)
        .await
        .unwrap_or_else(|e| panic!("a scratch schema on CONFAB_TEST_PG_URL ({base}): {e}"))
}

/// A store of the backend's kind, fresh and migrated, in `dir` for SQLite.
pub async fn open_store(backend: Backend, dir: &std::path::Path) -> Store {
    match backend {
        Backend::Sqlite => Store::open(dir, None, EventBus::default()).await.unwrap(),
        Backend::Postgres => Store::connect(&pg_schema_url().await, EventBus::default())
            .await
            .unwrap(),
    }
}

/// Settings for tests: cheap argon2 (still argon2id), a generous login limit.
pub fn test_settings() -> ApiSettings {
    let defaults = ApiSettings::default();
    ApiSettings {
        password: PasswordParams {
            memory_kib: 64,
            iterations: 1,
        },
        login_limit: RateLimit {
            burst: 1000,
            per_minute: 1000,
        },
        ..defaults
    }
}

/// A response: status, headers and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    /// Asserts the status (with the body in the message).
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an error response: status, code, a message, and nothing else.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            self.body
        );
        assert_eq!(
            self.body.as_object().map(|o| o.len()),
            Some(1),
            "an error carries no data: {}",
            self.body
        );
        self
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: u64,
    pub access: String,
    pub refresh: String,
}

/// One API server and a client for it.
pub struct TestApi {
    pub addr: SocketAddr,
    pub state: ApiState,
    pub log: Arc<RocksLog>,
    http: Client<HttpConnector, Full<Bytes>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: TempDir,
}

impl TestApi {
    /// A server with [`test_settings`].
    pub async fn start(backend: Backend) -> TestApi {
        TestApi::start_with(backend, |_| {}).await
    }

    /// A server with [`test_settings`] edited by `edit`.
    pub async fn start_with(backend: Backend, edit: impl FnOnce(&mut ApiSettings)) -> TestApi {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            RocksLog::open(
                dir.path().join("log"),
                LogConfig {
                    sync_policy: SyncPolicy::None,
                    ..LogConfig::default()
                },
            )
            .unwrap(),
        );
        let store = open_store(backend, dir.path()).await;
        let mut settings = test_settings();
        edit(&mut settings);
        let state = ApiState::new(store, log.clone(), SECRET, settings).unwrap();
        TestApi::serve(state, log, dir).await
    }

    /// Serves `state` on a fresh loopback port.
    pub async fn serve(state: ApiState, log: Arc<RocksLog>, dir: TempDir) -> TestApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = confab_api::router(state.clone());
        let gate = confab_admission::Admission::new(usize::MAX).gate("api", u32::MAX, true);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            confab_api::serve::serve(
                listener,
                router,
                gate,
                confab_api::serve::HttpLimits::default(),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        });
        let http = Client::builder(TokioExecutor::new()).build_http();
        TestApi {
            addr,
            state,
            log,
            http,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// Sends a request with raw headers and body bytes.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(format!("http://{}{}", self.addr, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let res = self.http.request(req).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Sends a request, with a JSON body and a bearer token when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let bytes = match body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(&b).unwrap()
            }
            None => Vec::new(),
        };
        self.raw(method, path, &headers, bytes).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("POST", path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("PATCH", path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call("DELETE", path, Some(token), None).await
    }

    /// Signs a new user up (password `password-<name>`).
    pub async fn signup(&self, username: &str) -> Session {
        let r = self
            .call(
                "POST",
                "/v1/signup",
                None,
                Some(json!({ "username": username, "password": format!("password-{username}") })),
            )
            .await
            .expect(201);
        session(&r.body)
    }

    /// Logs an existing user in (a new session).
    pub async fn login(&self, username: &str) -> Session {
        let r = self
            .call(
                "POST",
                "/v1/login",
                None,
                Some(json!({ "username": username, "password": format!("password-{username}") })),
            )
            .await
            .expect(200);
        session(&r.body)
    }

    /// An access token for `user_id` signed with the test key, issued at
    /// `issued_at` for `ttl` seconds (to make expired tokens).
    pub fn mint(&self, user_id: u64, session_id: u64, issued_at: u64, ttl: u64) -> String {
        TokenSigner::new(SECRET).issue(user_id, session_id, issued_at, ttl)
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn session(body: &Value) -> Session {
    Session {
        user_id: body["user_id"].as_u64().unwrap(),
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// The session id (`jti`) inside an access token, read without verifying.
pub fn session_id_of(access: &str) -> u64 {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let v: Value = serde_json::from_slice(&json).unwrap();
    v["jti"].as_str().unwrap().parse().unwrap()
}
