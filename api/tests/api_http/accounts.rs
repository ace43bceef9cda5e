//! Signup, login, rate limiting, refresh, logout and token checks.

use std::time::Duration;

use confab_api::ApiState;
use confab_directory::auth::AuthError;
use confab_directory::events::DirectoryEvent;
use serde_json::json;

use crate::harness::{now, session_id_of, Backend, TestApi, SECRET};

pub async fn signup_returns_working_tokens(b: Backend) {
    let t = TestApi::start(b).await;
    let r = t
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(json!({"username": "ada", "password": "correct horse"})),
        )
        .await
        .expect(201);
    let user_id = r.body["user_id"].as_u64().unwrap();
    assert!(user_id > 0);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    let access = r.body["access_token"].as_str().unwrap();
    let refresh = r.body["refresh_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "a JWT");
    assert!(refresh.len() >= 43);

    let me = t.get("/v1/me", access).await.expect(200);
    assert_eq!(me.body["user_id"], user_id);
    assert_eq!(me.body["username"], "ada");
    assert_eq!(
        me.body["display_name"], "ada",
        "display name defaults to the username"
    );

    let r = t
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(json!({"username": "grace", "password": "hopper1906", "display_name": "  Grace H. "})),
        )
        .await
        .expect(201);
    assert_ne!(r.body["user_id"], user_id);
    let me = t
        .get("/v1/me", r.body["access_token"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(me.body["display_name"], "Grace H.");

    // The password is stored as an argon2id hash, never in clear.
    let (_, hash) = t.state.store().credentials("ada").await.unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
}

pub async fn signup_validates_its_input(b: Backend) {
    let t = TestApi::start(b).await;
    let signup = |body: serde_json::Value| t.call("POST", "/v1/signup", None, Some(body));
    for bad in [
        "ab",
        "Ada",
        "ada lovelace",
        "ada/x",
        "émile",
        &"x".repeat(33),
        "",
    ] {
        signup(json!({"username": bad, "password": "long enough"}))
            .await
            .expect_error(400, "INVALID_USERNAME");
    }
    for ok in ["a.b", "x_y-z.0", &"x".repeat(32)] {
        signup(json!({"username": ok, "password": "long enough"}))
            .await
            .expect(201);
    }
    signup(json!({"username": "shortpw", "password": "1234567"}))
        .await
        .expect_error(400, "INVALID_PASSWORD");
    signup(json!({"username": "longpw", "password": "x".repeat(257)}))
        .await
        .expect_error(400, "INVALID_PASSWORD");
    signup(json!({"username": "okpw", "password": "x".repeat(256)}))
        .await
        .expect(201);
    signup(json!({"username": "blank", "password": "long enough", "display_name": "  "}))
        .await
        .expect_error(400, "INVALID_DISPLAY_NAME");
    signup(json!({"username": "a.b", "password": "another one"}))
        .await
        .expect_error(409, "USERNAME_TAKEN");
    signup(json!({"username": "nopw"}))
        .await
        .expect_error(400, "INVALID_REQUEST");
    signup(json!({"username": "extra", "password": "long enough", "admin": true}))
        .await
        .expect_error(400, "INVALID_REQUEST");
    signup(json!({"username": 42, "password": "long enough"}))
        .await
        .expect_error(400, "INVALID_REQUEST");

    let r = t
        .raw(
            "POST",
            "/v1/signup",
            &[("content-type", "application/json")],
            b"{\"username\": \"x\",".to_vec(),
        )
        .await
        .expect_error(400, "MALFORMED_JSON");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON"),
        "{}",
        r.body
    );
    t.raw(
        "POST",
        "/v1/signup",
        &[("content-type", "application/json")],
        b"not json".to_vec(),
    )
    .await
    .expect_error(400, "MALFORMED_JSON");
    t.raw(
        "POST",
        "/v1/signup",
        &[],
        br#"{"username":"ct","password":"long enough"}"#.to_vec(),
    )
    .await
    .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    assert!(t.state.store().credentials("ct").await.unwrap().is_none());
}

pub async fn login_succeeds_and_fails_alike_for_unknown_users(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let again = t.login("ada").await;
    assert_eq!(again.user_id, ada.user_id);
    assert_ne!(again.refresh, ada.refresh);
    assert_ne!(
        session_id_of(&again.access),
        session_id_of(&ada.access),
        "a new session per login"
    );
    t.get("/v1/me", &again.access).await.expect(200);

    let login = |u: &str, p: &str| {
        t.call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"username": u, "password": p})),
        )
    };
    let verifications = || t.state.passwords().verifications();

    let before = verifications();
    let wrong = login("ada", "not her password")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    assert_eq!(verifications(), before + 1);
    // An unknown user costs the same argon2 verification (against the dummy
    // hash) and gets the very same answer.
    let unknown = login("nobody", "not her password")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    assert_eq!(
        verifications(),
        before + 2,
        "unknown user: argon2 still ran"
    );
    assert_eq!(wrong.body, unknown.body);
    // So does a username that cannot exist.
    login("NOT VALID", "whatever")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    assert_eq!(verifications(), before + 3);
    login("ada", "")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    t.call("POST", "/v1/login", None, Some(json!({"username": "ada"})))
        .await
        .expect_error(400, "INVALID_REQUEST");
}

pub async fn login_is_rate_limited_per_username_and_per_ip(b: Backend) {
    let t = TestApi::start_with(b, |s| {
        s.login_limit.burst = 3;
        s.login_limit.per_minute = 1;
        s.trust_forwarded_for = true;
    })
    .await;
    t.signup("ada").await;
    let attempt = |user: &'static str, password: &'static str, ip: &'static str| {
        let body = serde_json::to_vec(&json!({"username": user, "password": password})).unwrap();
        let t = &t;
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("x-forwarded-for", ip),
            ];
            t.raw("POST", "/v1/login", &headers, body).await
        }
    };
    // Per username: three tries from three addresses, then refused even
    // from a fresh address and even with the right password.
    attempt("ada", "wrong-1", "10.0.0.1")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    attempt("ada", "wrong-2", "10.0.0.2")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    attempt("ada", "password-ada", "10.0.0.3").await.expect(200);
    let verifications = t.state.passwords().verifications();
    let r = attempt("ada", "password-ada", "10.0.0.4")
        .await
        .expect_error(429, "RATE_LIMITED");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        t.state.passwords().verifications(),
        verifications,
        "refused before any argon2 work"
    );

    // Per IP: three usernames from one address, then the fourth is refused.
    attempt("u1", "x", "10.0.1.1")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    attempt("u2", "x", "10.0.1.1")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    attempt("u3", "x", "10.0.1.1")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    attempt("u4", "x", "10.0.1.1")
        .await
        .expect_error(429, "RATE_LIMITED");
    attempt("u4", "x", "10.0.1.2")
        .await
        .expect_error(401, "INVALID_CREDENTIALS");

    // Without a trusted proxy header the peer address (127.0.0.1) counts.
    let t = TestApi::start_with(b, |s| {
        s.login_limit.burst = 2;
        s.login_limit.per_minute = 1;
    })
    .await;
    for user in ["p1", "p2"] {
        t.call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"username": user, "password": "x"})),
        )
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
    }
    let r = t
        .raw(
            "POST",
            "/v1/login",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", "10.9.9.9"),
            ],
            br#"{"username":"p3","password":"x"}"#.to_vec(),
        )
        .await;
    r.expect_error(429, "RATE_LIMITED");
}

pub async fn refresh_rotates_and_a_reused_token_revokes_the_session(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let refresh = |token: &str| {
        t.call(
            "POST",
            "/v1/token/refresh",
            None,
            Some(json!({"refresh_token": token})),
        )
    };
    let r = refresh(&ada.refresh).await.expect(200);
    assert_eq!(r.body["user_id"], ada.user_id);
    let access2 = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, ada.refresh);
    assert_eq!(
        session_id_of(&access2),
        session_id_of(&ada.access),
        "same session"
    );
    t.get("/v1/me", &access2).await.expect(200);
    let r = refresh(&refresh2).await.expect(200);
    let access3 = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh3 = r.body["refresh_token"].as_str().unwrap().to_owned();

    // Replaying an exchanged token: someone else has it. The session dies.
    let mut events = t.state.events().subscribe();
    refresh(&refresh2)
        .await
        .expect_error(401, "INVALID_REFRESH_TOKEN");
    refresh(&refresh3)
        .await
        .expect_error(401, "INVALID_REFRESH_TOKEN");
    t.get("/v1/me", &access3)
        .await
        .expect_error(401, "TOKEN_REVOKED");
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::SessionRevoked {
            user_id: ada.user_id,
            session_id: session_id_of(&access3)
        }
    );

    refresh("no-such-token")
        .await
        .expect_error(401, "INVALID_REFRESH_TOKEN");
    refresh(&"x".repeat(300))
        .await
        .expect_error(401, "INVALID_REFRESH_TOKEN");
    t.call("POST", "/v1/token/refresh", None, Some(json!({})))
        .await
        .expect_error(400, "INVALID_REQUEST");
    // Other sessions are untouched.
    let other = t.login("ada").await;
    refresh(&other.refresh).await.expect(200);
}

pub async fn logout_revokes_the_session_at_once(b: Backend) {
    let t = TestApi::start(b).await;
    let phone = t.signup("ada").await;
    let laptop = t.login("ada").await;
    // What the gateway holds: a clone of the API's verifier.
    let gateway_verifier = t.state.verifier().clone();
    assert!(gateway_verifier.verify(&phone.access, now()).is_ok());
    let mut events = t.state.events().subscribe();

    t.call("POST", "/v1/logout", Some(&phone.access), None)
        .await
        .expect(204);
    assert_eq!(
        gateway_verifier.verify(&phone.access, now()),
        Err(AuthError::Revoked)
    );
    t.get("/v1/me", &phone.access)
        .await
        .expect_error(401, "TOKEN_REVOKED");
    t.call("POST", "/v1/logout", Some(&phone.access), None)
        .await
        .expect_error(401, "TOKEN_REVOKED");
    t.call(
        "POST",
        "/v1/token/refresh",
        None,
        Some(json!({"refresh_token": phone.refresh})),
    )
    .await
    .expect_error(401, "INVALID_REFRESH_TOKEN");
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::SessionRevoked {
            user_id: phone.user_id,
            session_id: session_id_of(&phone.access)
        }
    );
    // The user's other session goes on.
    t.get("/v1/me", &laptop.access).await.expect(200);
    assert!(gateway_verifier.verify(&laptop.access, now()).is_ok());
    t.call("POST", "/v1/logout", None, None)
        .await
        .expect_error(401, "UNAUTHENTICATED");
}

pub async fn expired_forged_and_missing_tokens_are_refused(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let sid = session_id_of(&ada.access);
    let expired = t.mint(ada.user_id, sid, now() - 3600, 60);
    t.get("/v1/me", &expired)
        .await
        .expect_error(401, "TOKEN_EXPIRED");
    let fresh = t.mint(ada.user_id, sid, now(), 60);
    t.get("/v1/me", &fresh).await.expect(200);

    let forged = confab_directory::auth::TokenSigner::new(b"not the server's key, 32+ bytes long")
        .issue(ada.user_id, sid, now(), 60);
    t.get("/v1/me", &forged)
        .await
        .expect_error(401, "INVALID_TOKEN");
    let mut tampered = ada.access.clone();
    tampered.pop();
    tampered.push(if ada.access.ends_with('A') { 'B' } else { 'A' });
    t.get("/v1/me", &tampered)
        .await
        .expect_error(401, "INVALID_TOKEN");
    t.get("/v1/me", "garbage")
        .await
        .expect_error(401, "INVALID_TOKEN");

    let r = t
        .call("GET", "/v1/me", None, None)
        .await
        .expect_error(401, "UNAUTHENTICATED");
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    t.raw(
        "GET",
        "/v1/me",
        &[("authorization", "Basic YWRhOnB3")],
        vec![],
    )
    .await
    .expect_error(401, "UNAUTHENTICATED");
    let lower = format!("bearer {}", ada.access);
    t.raw(
        "GET",
        "/v1/me",
        &[("authorization", lower.as_str())],
        vec![],
    )
    .await
    .expect(200);
}

pub async fn access_tokens_expire_in_real_time(b: Backend) {
    // Two seconds: `exp` counts whole seconds from the issuing second, so
    // the token is valid for at least one full second after signup.
    let t = TestApi::start_with(b, |s| s.access_token_ttl_secs = 2).await;
    let ada = t.signup("ada").await;
    t.get("/v1/me", &ada.access).await.expect(200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    t.get("/v1/me", &ada.access)
        .await
        .expect_error(401, "TOKEN_EXPIRED");
    // Refreshing is the way back.
    let r = t
        .call(
            "POST",
            "/v1/token/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh})),
        )
        .await
        .expect(200);
    t.get("/v1/me", r.body["access_token"].as_str().unwrap())
        .await
        .expect(200);
}

pub async fn revocations_reach_other_nodes(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    // A second API node over the same store (and key), with its own
    // in-memory revocation set.
    let other = ApiState::new(
        t.state.store().clone(),
        t.state.log().clone(),
        SECRET,
        crate::harness::test_settings(),
    )
    .unwrap();
    assert!(other.verifier().verify(&ada.access, now()).is_ok());
    t.call("POST", "/v1/logout", Some(&ada.access), None)
        .await
        .expect(204);
    // Not yet seen there: it learns at its next poll.
    assert!(other.verifier().verify(&ada.access, now()).is_ok());
    assert_eq!(other.sync_revocations().await.unwrap(), 1);
    assert_eq!(
        other.verifier().verify(&ada.access, now()),
        Err(AuthError::Revoked)
    );
    // The background poll does the same.
    let third = ApiState::new(t.state.store().clone(), t.state.log().clone(), SECRET, {
        let mut s = crate::harness::test_settings();
        s.revocation_poll = Duration::from_millis(50);
        s
    })
    .unwrap();
    let task = tokio::spawn(third.clone().run_revocation_sync());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while third.verifier().verify(&ada.access, now()).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the poll never saw the revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        third.verifier().verify(&ada.access, now()),
        Err(AuthError::Revoked)
    );
    task.abort();
}

pub async fn signup_is_rate_limited_per_address(b: Backend) {
    let t = TestApi::start_with(b, |s| {
        s.signup_limit.burst = 2;
        s.signup_limit.per_minute = 1;
        s.exempt_loopback = false;
        s.trust_forwarded_for = true;
    })
    .await;
    let signup = |user: &'static str, ip: &'static str| {
        let body =
            serde_json::to_vec(&json!({"username": user, "password": "password-1"})).unwrap();
        let t = &t;
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("x-forwarded-for", ip),
            ];
            t.raw("POST", "/v1/signup", &headers, body).await
        }
    };
    signup("sig1", "10.0.0.1").await.expect(201);
    signup("sig2", "10.0.0.1").await.expect(201);
    let r = signup("sig3", "10.0.0.1")
        .await
        .expect_error(429, "RATE_LIMITED");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Nothing was created, and other addresses are unaffected.
    t.call(
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": "sig3", "password": "password-1"})),
    )
    .await
    .expect_error(401, "INVALID_CREDENTIALS");
    signup("sig3", "10.0.0.2").await.expect(201);

    // By default loopback clients (a load generator on the node's own
    // machine) are not limited.
    let t = TestApi::start_with(b, |s| {
        s.signup_limit.burst = 1;
        s.signup_limit.per_minute = 1;
    })
    .await;
    for user in ["loop1", "loop2", "loop3"] {
        t.signup(user).await;
    }
}
