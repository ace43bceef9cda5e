//! `/v1/dms` and `/v1/channels`.

use confab_directory::events::DirectoryEvent;
use serde_json::json;

use crate::harness::{Backend, TestApi};

pub async fn dm_channel_is_created_once_per_pair(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let cat = t.signup("cat").await;
    let mut events = t.state.events().subscribe();

    let r = t
        .post("/v1/dms", &ada.access, json!({"user_id": bob.user_id}))
        .await
        .expect(201);
    let dm = r.body["channel_id"].as_u64().unwrap();
    assert_eq!(r.body["created"], true);
    assert_eq!(r.body["user_id"], bob.user_id);
    let mut pair = vec![ada.user_id, bob.user_id];
    pair.sort_unstable();
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: dm,
            members: pair.clone()
        }
    );
    // Again, from either side: the same channel, nothing created.
    let r = t
        .post("/v1/dms", &ada.access, json!({"user_id": bob.user_id}))
        .await
        .expect(200);
    assert_eq!(
        (r.body["channel_id"].as_u64(), &r.body["created"]),
        (Some(dm), &json!(false))
    );
    let r = t
        .post("/v1/dms", &bob.access, json!({"user_id": ada.user_id}))
        .await
        .expect(200);
    assert_eq!(r.body["channel_id"], dm);
    assert!(events.try_recv().is_err());
    // The gateway's entry point agrees.
    assert_eq!(
        t.state
            .store()
            .dm_channel(bob.user_id, ada.user_id)
            .await
            .unwrap(),
        dm
    );
    assert_eq!(
        t.state.store().channel_members(dm).await.unwrap(),
        Some(pair)
    );

    // Many first contacts at once still make one channel.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, a, c) = (t.state.store().clone(), ada.user_id, cat.user_id);
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store.dm_channel(a, c).await
            } else {
                store.dm_channel(c, a).await
            }
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_ne!(ids[0], dm);

    // DM and group ids share one space.
    let g = t
        .post("/v1/groups", &ada.access, json!({"name": "g"}))
        .await
        .expect(201);
    let g = g.body["channel_id"].as_u64().unwrap();
    assert!(g != dm && g != ids[0]);

    t.post("/v1/dms", &ada.access, json!({"user_id": ada.user_id}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    t.post("/v1/dms", &ada.access, json!({"user_id": 987654}))
        .await
        .expect_error(404, "UNKNOWN_USER");
    t.post("/v1/dms", &ada.access, json!({"user_id": "bob"}))
        .await
        .expect_error(400, "INVALID_REQUEST");
    t.post("/v1/dms", &ada.access, json!({}))
        .await
        .expect_error(400, "INVALID_REQUEST");
    t.call(
        "POST",
        "/v1/dms",
        None,
        Some(json!({"user_id": bob.user_id})),
    )
    .await
    .expect_error(401, "UNAUTHENTICATED");
    assert!(matches!(
        t.state.store().dm_channel(ada.user_id, 987654).await,
        Err(confab_directory::store::StoreError::UnknownUser(987654))
    ));
}

pub async fn channels_are_listed_with_roles_and_peers(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let cat = t.signup("cat").await;
    let dm = t
        .post("/v1/dms", &ada.access, json!({"user_id": bob.user_id}))
        .await
        .expect(201);
    let dm = dm.body["channel_id"].as_u64().unwrap();
    let g = t
        .post(
            "/v1/groups",
            &bob.access,
            json!({"name": "Analytical Engine", "members": [ada.user_id]}),
        )
        .await
        .expect(201);
    let g = g.body["channel_id"].as_u64().unwrap();

    let r = t.get("/v1/channels", &ada.access).await.expect(200);
    let list = r.body["channels"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["channel_id"], dm);
    assert_eq!(list[0]["kind"], "dm");
    assert_eq!(list[0]["peer_id"], bob.user_id);
    assert_eq!(list[0]["member_count"], 2);
    assert!(list[0].get("name").is_none());
    assert_eq!(list[1]["channel_id"], g);
    assert_eq!(list[1]["kind"], "group");
    assert_eq!(list[1]["name"], "Analytical Engine");
    assert_eq!(list[1]["owner_id"], bob.user_id);
    assert_eq!(list[1]["role"], "member");
    assert_eq!(list[1]["member_count"], 2);
    let r = t.get("/v1/channels", &cat.access).await.expect(200);
    assert_eq!(r.body["channels"], json!([]));

    let r = t
        .get(&format!("/v1/channels/{dm}"), &bob.access)
        .await
        .expect(200);
    assert_eq!(r.body["peer_id"], ada.user_id);
    assert_eq!(r.body["role"], "member");
    let r = t
        .get(&format!("/v1/channels/{g}"), &bob.access)
        .await
        .expect(200);
    assert_eq!(r.body["role"], "owner");
    let r = t
        .get(&format!("/v1/channels/{g}/members"), &ada.access)
        .await
        .expect(200);
    assert_eq!(r.body["channel_id"], g);
    let members = r.body["members"].as_array().unwrap();
    let roles: Vec<(u64, &str)> = members
        .iter()
        .map(|m| (m["user_id"].as_u64().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    let mut expected = vec![(ada.user_id, "member"), (bob.user_id, "owner")];
    expected.sort_unstable();
    assert_eq!(roles, expected);

    let summaries = t.state.store().user_channels(ada.user_id).await.unwrap();
    assert_eq!(
        summaries.iter().map(|s| s.channel.id).collect::<Vec<_>>(),
        [dm, g]
    );
    assert_eq!(t.state.store().channel_members(424242).await.unwrap(), None);
}
