//! `/v1/channels/{id}/mute`: the per-member switch the push service obeys.

use serde_json::json;

use crate::harness::{Backend, TestApi};

pub async fn mute_is_per_member_and_members_only(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let eve = t.signup("eve").await;
    let group = t
        .post(
            "/v1/groups",
            &ada.access,
            json!({"name": "g", "members": [bob.user_id]}),
        )
        .await
        .expect(201)
        .body["channel_id"]
        .as_u64()
        .unwrap();
    let path = format!("/v1/channels/{group}/mute");

    let r = t.get(&path, &ada.access).await.expect(200);
    assert_eq!(r.body, json!({"channel_id": group, "muted": false}));
    let r = t
        .call(
            "PUT",
            &path,
            Some(&ada.access),
            Some(json!({"muted": true})),
        )
        .await
        .expect(200);
    assert_eq!(r.body["muted"], true);
    assert!(t.state.store().is_muted(group, ada.user_id).await.unwrap());
    // Only Ada's switch moved.
    assert!(!t.state.store().is_muted(group, bob.user_id).await.unwrap());
    assert_eq!(
        t.get(&path, &bob.access).await.expect(200).body["muted"],
        false
    );
    assert_eq!(
        t.get(&path, &ada.access).await.expect(200).body["muted"],
        true
    );
    t.call(
        "PUT",
        &path,
        Some(&ada.access),
        Some(json!({"muted": false})),
    )
    .await
    .expect(200);
    assert!(!t.state.store().is_muted(group, ada.user_id).await.unwrap());

    // Outsiders, unknown channels and bad bodies get typed errors.
    t.call(
        "PUT",
        &path,
        Some(&eve.access),
        Some(json!({"muted": true})),
    )
    .await
    .expect_error(403, "NOT_A_MEMBER");
    t.get("/v1/channels/999999/mute", &ada.access)
        .await
        .expect_error(403, "NOT_A_MEMBER");
    t.call(
        "PUT",
        &path,
        Some(&ada.access),
        Some(json!({"muted": "yes"})),
    )
    .await
    .expect(400);
    t.call("PUT", &path, None, Some(json!({"muted": true})))
        .await
        .expect_error(401, "UNAUTHENTICATED");
}
