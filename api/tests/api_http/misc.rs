//! Discovery, the OpenAPI document, body limits, unknown routes, and the
//! directory events the store publishes for the gateway.

use confab_directory::events::DirectoryEvent;
use confab_directory::store::StoreError;
use serde_json::json;

use crate::harness::{Backend, TestApi};

pub async fn discovery_advertises_the_gateway(b: Backend) {
    let t = TestApi::start(b).await;
    for path in ["/v1/gateway", "/v1/discovery"] {
        // No token needed.
        let r = t.call("GET", path, None, None).await.expect(200);
        assert_eq!(r.body["websocket_url"], "ws://127.0.0.1:8081/v1/ws");
        assert_eq!(r.body["secure_websocket_url"], "wss://127.0.0.1:8081/v1/ws");
        assert_eq!(r.body["quic_addr"], "127.0.0.1:8443");
        assert_eq!(
            r.body["gateways"],
            json!([{
                "websocket_url": "ws://127.0.0.1:8081/v1/ws",
                "secure_websocket_url": "wss://127.0.0.1:8081/v1/ws",
                "quic_addr": "127.0.0.1:8443"
            }])
        );
    }
    // A node that serves plain ws:// to no one never advertises it, even
    // to a loopback client.
    let t = TestApi::start_with(b, |s| {
        s.discovery.ws_addr = "0.0.0.0:9001".parse().unwrap();
        s.discovery.quic_addr = "0.0.0.0:9443".into();
        s.discovery.plain_ws = confab_api::PlainWs::Never;
    })
    .await;
    let r = t
        .raw(
            "GET",
            "/v1/gateway",
            &[("host", "chat.example:8080")],
            vec![],
        )
        .await
        .expect(200);
    assert_eq!(r.body["websocket_url"], "wss://chat.example:9001/v1/ws");
    assert_eq!(
        r.body["gateways"][0]["websocket_url"],
        "wss://chat.example:9001/v1/ws"
    );
    assert_eq!(r.body["quic_addr"], "chat.example:9443");
}

/// Every route the router serves, as (method, path template).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/signup"),
    ("post", "/v1/login"),
    ("post", "/v1/token/refresh"),
    ("post", "/v1/logout"),
    ("get", "/v1/me"),
    ("patch", "/v1/me"),
    ("get", "/v1/users"),
    ("get", "/v1/users/{user_id}"),
    ("get", "/v1/devices"),
    ("post", "/v1/devices"),
    ("delete", "/v1/devices/{device_id}"),
    ("get", "/v1/friends"),
    ("post", "/v1/friends/{user_id}"),
    ("delete", "/v1/friends/{user_id}"),
    ("post", "/v1/friends/{user_id}/accept"),
    ("post", "/v1/friends/{user_id}/decline"),
    ("post", "/v1/dms"),
    ("post", "/v1/groups"),
    ("patch", "/v1/groups/{channel_id}"),
    ("post", "/v1/groups/{channel_id}/members"),
    ("patch", "/v1/groups/{channel_id}/members/{user_id}"),
    ("delete", "/v1/groups/{channel_id}/members/{user_id}"),
    ("post", "/v1/groups/{channel_id}/leave"),
    ("get", "/v1/channels"),
    ("get", "/v1/channels/{channel_id}"),
    ("get", "/v1/channels/{channel_id}/members"),
    ("get", "/v1/channels/{channel_id}/messages"),
    ("get", "/v1/channels/{channel_id}/receipts"),
    ("get", "/v1/channels/{channel_id}/mute"),
    ("put", "/v1/channels/{channel_id}/mute"),
    ("get", "/v1/gateway"),
    ("get", "/v1/discovery"),
    ("get", "/v1/openapi.json"),
];

pub async fn openapi_document_covers_every_route(b: Backend) {
    let t = TestApi::start(b).await;
    let r = t
        .call("GET", "/v1/openapi.json", None, None)
        .await
        .expect(200);
    assert_eq!(r.headers["content-type"], "application/json");
    let doc = r.body;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.push((method.clone(), path.clone()));
            // Routed: an unauthenticated call gets the documented answer
            // (401 for protected operations), never the router's 404/405.
            let concrete = path
                .replace("{user_id}", "1")
                .replace("{channel_id}", "1")
                .replace("{device_id}", "1");
            let body = op.get("requestBody").map(|_| json!({}));
            let res = t.call(&method.to_uppercase(), &concrete, None, body).await;
            assert!(
                res.code() != "NOT_FOUND" && res.code() != "METHOD_NOT_ALLOWED",
                "{method} {path} is documented but not routed: {}",
                res.body
            );
            let protected = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if protected {
                assert_eq!(
                    res.status, 401,
                    "{method} {path} is documented as protected"
                );
                assert!(op["responses"].get("401").is_some());
            }
            assert!(
                op["responses"]
                    .get(res.status.to_string().as_str())
                    .is_some(),
                "{method} {path} answered {} which the document does not list: {}",
                res.status,
                res.body
            );
        }
    }
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    documented.sort();
    assert_eq!(
        documented, routes,
        "the document and the router list different routes"
    );
}

pub async fn request_bodies_are_size_limited(b: Backend) {
    let t = TestApi::start_with(b, |s| s.max_body_bytes = 1024).await;
    let ada = t.signup("ada").await;
    let big = json!({"display_name": "x".repeat(2000)});
    let r = t
        .patch("/v1/me", &ada.access, big)
        .await
        .expect_error(413, "PAYLOAD_TOO_LARGE");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024"),
        "{}",
        r.body
    );
    // Just under the limit the body is read (and then judged on its content).
    let under = json!({"display_name": "x".repeat(1000)});
    assert!(serde_json::to_vec(&under).unwrap().len() <= 1024);
    t.patch("/v1/me", &ada.access, under)
        .await
        .expect_error(400, "INVALID_DISPLAY_NAME");
    // A large signup is refused before any work.
    let r = t
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(json!({"username": "eve", "password": "p".repeat(5000)})),
        )
        .await;
    r.expect_error(413, "PAYLOAD_TOO_LARGE");
    assert!(t.state.store().credentials("eve").await.unwrap().is_none());
    // The default limit (64 KiB) holds too.
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let members: Vec<u64> = (1..=20_000).collect();
    t.post(
        "/v1/groups",
        &ada.access,
        json!({"name": "g", "members": members}),
    )
    .await
    .expect_error(413, "PAYLOAD_TOO_LARGE");
}

pub async fn unknown_routes_and_methods_answer_in_json(b: Backend) {
    let t = TestApi::start(b).await;
    t.call("GET", "/v1/nothing-here", None, None)
        .await
        .expect_error(404, "NOT_FOUND");
    t.call("GET", "/v2/me", None, None)
        .await
        .expect_error(404, "NOT_FOUND");
    t.call("DELETE", "/v1/me", None, None)
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED");
    t.call("GET", "/v1/signup", None, None)
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED");
}

pub async fn store_publishes_directory_events(b: Backend) {
    let t = TestApi::start(b).await;
    let store = t.state.store();
    let ada = t.signup("ada").await.user_id;
    let bob = t.signup("bob").await.user_id;
    let cat = t.signup("cat").await.user_id;
    let mut rx = store.events().subscribe();

    // The gateway's own calls publish too (a first message creating a DM).
    let dm = store.dm_channel(ada, bob).await.unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: dm,
            members: vec![ada, bob]
        }
    );
    assert!(store.user_exists(cat).await.unwrap());
    assert!(!store.user_exists(999_999).await.unwrap());
    assert!(matches!(
        store.dm_channel(ada, ada).await,
        Err(StoreError::InvalidArgument(_))
    ));

    let g = store.create_group(ada, "g", &[bob]).await.unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: g.id,
            members: vec![ada, bob]
        }
    );
    store.add_members(g.id, ada, &[cat]).await.unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: g.id,
            members: vec![ada, bob, cat]
        }
    );
    store.remove_member(g.id, ada, bob).await.unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: g.id,
            members: vec![ada, cat]
        }
    );
    assert_eq!(
        store.channel_members(g.id).await.unwrap(),
        Some(vec![ada, cat])
    );

    store.request_friend(ada, bob).await.unwrap();
    store.accept_friend(bob, ada).await.unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        DirectoryEvent::FriendshipChanged {
            a: ada,
            b: bob,
            friends: true
        }
    );
    assert_eq!(store.friends(ada).await.unwrap(), vec![bob]);
    let r = t.call("GET", "/v1/me", None, None).await;
    assert_eq!(r.status, 401);
    assert!(rx.try_recv().is_err(), "reads publish nothing");
}
