//! `/v1/devices`.

use confab_directory::events::DirectoryEvent;
use confab_directory::store::Platform;
use serde_json::json;

use crate::harness::{Backend, TestApi};

pub async fn devices_register_list_and_unregister(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let mut events = t.state.events().subscribe();

    let r = t
        .post(
            "/v1/devices",
            &ada.access,
            json!({"platform": "fcm", "push_token": "fcm:phone-1"}),
        )
        .await
        .expect(200);
    let phone = r.body["device_id"].as_u64().unwrap();
    assert_eq!(r.body["platform"], "fcm");
    assert_eq!(r.body["push_token"], "fcm:phone-1");
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::DevicesChanged {
            user_id: ada.user_id
        }
    );
    // Registering the same token again is a no-op.
    let r = t
        .post(
            "/v1/devices",
            &ada.access,
            json!({"platform": "fcm", "push_token": "fcm:phone-1"}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["device_id"], phone);
    assert!(
        events.try_recv().is_err(),
        "nothing changed, nothing published"
    );
    let r = t
        .post(
            "/v1/devices",
            &ada.access,
            json!({"platform": "webhook", "push_token": "https://relay.example/ada"}),
        )
        .await
        .expect(200);
    let hook = r.body["device_id"].as_u64().unwrap();
    t.post(
        "/v1/devices",
        &ada.access,
        json!({"platform": "apns", "push_token": "apns-tablet"}),
    )
    .await
    .expect(200);

    let r = t.get("/v1/devices", &ada.access).await.expect(200);
    let list = r.body["devices"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["device_id"], phone);
    let stored = t.state.store().devices(ada.user_id).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[1].platform, Platform::Webhook);
    assert_eq!(
        t.state
            .store()
            .device(ada.user_id, hook)
            .await
            .unwrap()
            .unwrap()
            .push_token,
        "https://relay.example/ada"
    );
    assert!(t
        .state
        .store()
        .device(bob.user_id, hook)
        .await
        .unwrap()
        .is_none());

    for (platform, token) in [
        ("webhook", "not-a-url"),
        ("fcm", ""),
        ("fcm", "has space"),
        ("apns", &"x".repeat(4097)),
    ] {
        t.post(
            "/v1/devices",
            &ada.access,
            json!({"platform": platform, "push_token": token}),
        )
        .await
        .expect_error(400, "INVALID_PUSH_TOKEN");
    }
    t.post(
        "/v1/devices",
        &ada.access,
        json!({"platform": "sms", "push_token": "x"}),
    )
    .await
    .expect_error(400, "INVALID_REQUEST");

    // The same phone, now used by bob: the token moves to him.
    while events.try_recv().is_ok() {}
    let r = t
        .post(
            "/v1/devices",
            &bob.access,
            json!({"platform": "fcm", "push_token": "fcm:phone-1"}),
        )
        .await
        .expect(200);
    assert_ne!(r.body["device_id"], phone);
    let changed: Vec<DirectoryEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        changed.contains(&DirectoryEvent::DevicesChanged {
            user_id: bob.user_id
        }),
        "{changed:?}"
    );
    assert!(
        changed.contains(&DirectoryEvent::DevicesChanged {
            user_id: ada.user_id
        }),
        "{changed:?}"
    );
    assert_eq!(
        t.get("/v1/devices", &ada.access).await.expect(200).body["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        t.get("/v1/devices", &bob.access).await.expect(200).body["devices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Someone else's device is not yours to remove, nor to learn about.
    t.delete(&format!("/v1/devices/{hook}"), &bob.access)
        .await
        .expect_error(404, "UNKNOWN_DEVICE");
    t.delete(&format!("/v1/devices/{hook}"), &ada.access)
        .await
        .expect(204);
    t.delete(&format!("/v1/devices/{hook}"), &ada.access)
        .await
        .expect_error(404, "UNKNOWN_DEVICE");
    t.delete("/v1/devices/x", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    assert_eq!(t.state.store().devices(ada.user_id).await.unwrap().len(), 1);

    // The push service's dead-token mark: the device stays (its id is the
    // gateway's device_id) but shows as inactive, once.
    let store = t.state.store();
    assert_eq!(
        store
            .mark_push_token_dead(Platform::Apns, "apns-tablet")
            .await
            .unwrap(),
        Some(ada.user_id)
    );
    assert_eq!(
        store
            .mark_push_token_dead(Platform::Apns, "apns-tablet")
            .await
            .unwrap(),
        None
    );
    let listed = t.get("/v1/devices", &ada.access).await.expect(200).body;
    assert_eq!(listed["devices"][0]["push_active"], false);
    // The app registering its token again revives it, same device id.
    let again = t
        .post(
            "/v1/devices",
            &ada.access,
            json!({"platform": "apns", "push_token": "apns-tablet"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(again["push_active"], true);
    assert_eq!(again["device_id"], listed["devices"][0]["device_id"]);
    t.call("GET", "/v1/devices", None, None)
        .await
        .expect_error(401, "UNAUTHENTICATED");
}
