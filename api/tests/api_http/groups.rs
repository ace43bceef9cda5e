//! `/v1/groups`.

use confab_directory::events::DirectoryEvent;
use serde_json::json;

use crate::harness::{Backend, Resp, TestApi};

fn member_ids(r: &Resp) -> Vec<u64> {
    r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_u64().unwrap())
        .collect()
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

pub async fn groups_are_managed_by_owner_and_admins(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let cat = t.signup("cat").await;
    let dan = t.signup("dan").await;
    let mut events = t.state.events().subscribe();

    let r = t
        .post(
            "/v1/groups",
            &ada.access,
            json!({"name": "  engine  ", "members": [bob.user_id, cat.user_id]}),
        )
        .await
        .expect(201);
    let g = r.body["channel_id"].as_u64().unwrap();
    assert_eq!(r.body["name"], "engine");
    assert_eq!(r.body["owner_id"], ada.user_id);
    let all = sorted(vec![ada.user_id, bob.user_id, cat.user_id]);
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: g,
            members: all.clone()
        }
    );
    assert_eq!(t.state.store().channel_members(g).await.unwrap(), Some(all));

    // A plain member may not manage the group.
    let path = format!("/v1/groups/{g}");
    t.patch(&path, &bob.access, json!({"name": "mine now"}))
        .await
        .expect_error(403, "FORBIDDEN");
    t.post(
        &format!("{path}/members"),
        &bob.access,
        json!({"user_ids": [dan.user_id]}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    t.delete(&format!("{path}/members/{}", cat.user_id), &bob.access)
        .await
        .expect_error(403, "FORBIDDEN");
    t.patch(
        &format!("{path}/members/{}", bob.user_id),
        &bob.access,
        json!({"role": "admin"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");

    // The owner renames and names an admin.
    let r = t
        .patch(&path, &ada.access, json!({"name": "Difference Engine"}))
        .await
        .expect(200);
    assert_eq!(r.body["name"], "Difference Engine");
    let r = t
        .patch(
            &format!("{path}/members/{}", bob.user_id),
            &ada.access,
            json!({"role": "admin"}),
        )
        .await
        .expect(200);
    let bob_role = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == bob.user_id)
        .unwrap()["role"]
        .clone();
    assert_eq!(bob_role, "admin");
    assert!(events.try_recv().is_err(), "roles are not membership");

    // The admin renames, adds and removes plain members, but not the owner.
    t.patch(&path, &bob.access, json!({"name": "Analytical Engine"}))
        .await
        .expect(200);
    let r = t
        .post(
            &format!("{path}/members"),
            &bob.access,
            json!({"user_ids": [dan.user_id, cat.user_id]}),
        )
        .await
        .expect(200);
    assert_eq!(
        member_ids(&r),
        sorted(vec![ada.user_id, bob.user_id, cat.user_id, dan.user_id])
    );
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: g,
            members: member_ids(&r)
        }
    );
    // Adding members already in changes nothing.
    t.post(
        &format!("{path}/members"),
        &bob.access,
        json!({"user_ids": [dan.user_id]}),
    )
    .await
    .expect(200);
    assert!(events.try_recv().is_err());
    t.delete(&format!("{path}/members/{}", cat.user_id), &bob.access)
        .await
        .expect(204);
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::MembershipChanged {
            channel_id: g,
            members: sorted(vec![ada.user_id, bob.user_id, dan.user_id])
        }
    );
    t.delete(&format!("{path}/members/{}", ada.user_id), &bob.access)
        .await
        .expect_error(403, "FORBIDDEN");
    t.delete(&format!("{path}/members/{}", cat.user_id), &bob.access)
        .await
        .expect_error(404, "UNKNOWN_MEMBER");
    let r = t
        .get(&format!("/v1/channels/{g}"), &dan.access)
        .await
        .expect(200);
    assert_eq!(r.body["name"], "Analytical Engine");

    // The removed member is out.
    t.get(&format!("/v1/channels/{g}/members"), &cat.access)
        .await
        .expect_error(403, "NOT_A_MEMBER");
    // A member leaves; leaving twice is refused.
    t.call("POST", &format!("{path}/leave"), Some(&dan.access), None)
        .await
        .expect(204);
    t.call("POST", &format!("{path}/leave"), Some(&dan.access), None)
        .await
        .expect_error(403, "NOT_A_MEMBER");
    // Removing oneself is leaving.
    t.delete(&format!("{path}/members/{}", bob.user_id), &bob.access)
        .await
        .expect(204);
    assert_eq!(
        t.state.store().channel_members(g).await.unwrap(),
        Some(vec![ada.user_id])
    );
}

pub async fn group_full_beyond_100_members_including_the_creator(b: Backend) {
    let t = TestApi::start(b).await;
    let owner = t.signup("owner").await;
    let mut others = Vec::new();
    for i in 0..101 {
        others.push(t.signup(&format!("user{i:03}")).await.user_id);
    }
    // 100 others + the creator = 101: refused, nothing created.
    let r = t
        .post(
            "/v1/groups",
            &owner.access,
            json!({"name": "too big", "members": &others[..100]}),
        )
        .await
        .expect_error(409, "GROUP_FULL");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("100"));
    assert_eq!(
        t.get("/v1/channels", &owner.access).await.expect(200).body["channels"],
        json!([])
    );
    // 99 others + the creator = 100: the limit, accepted (repeats and the
    // creator in the list do not count twice).
    let mut members: Vec<u64> = others[..99].to_vec();
    members.push(others[0]);
    members.push(owner.user_id);
    let r = t
        .post(
            "/v1/groups",
            &owner.access,
            json!({"name": "full", "members": members}),
        )
        .await
        .expect(201);
    let g = r.body["channel_id"].as_u64().unwrap();
    assert_eq!(
        t.state
            .store()
            .channel_members(g)
            .await
            .unwrap()
            .unwrap()
            .len(),
        100
    );
    // One more is one too many.
    let path = format!("/v1/groups/{g}/members");
    t.post(&path, &owner.access, json!({"user_ids": [others[100]]}))
        .await
        .expect_error(409, "GROUP_FULL");
    // Re-adding present members is fine.
    t.post(&path, &owner.access, json!({"user_ids": [others[5]]}))
        .await
        .expect(200);
    // Make room, then the newcomer fits.
    t.delete(&format!("{path}/{}", others[0]), &owner.access)
        .await
        .expect(204);
    let r = t
        .post(&path, &owner.access, json!({"user_ids": [others[100]]}))
        .await
        .expect(200);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 100);
    t.post(&path, &owner.access, json!({"user_ids": [others[0]]}))
        .await
        .expect_error(409, "GROUP_FULL");
}

pub async fn group_input_is_validated(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let cat = t.signup("cat").await;
    for bad in [
        json!(""),
        json!("   "),
        json!("x".repeat(101)),
        json!("new\nline"),
    ] {
        t.post("/v1/groups", &ada.access, json!({"name": bad}))
            .await
            .expect_error(400, "INVALID_GROUP_NAME");
    }
    t.post(
        "/v1/groups",
        &ada.access,
        json!({"name": "g", "members": [bob.user_id, 777777]}),
    )
    .await
    .expect_error(404, "UNKNOWN_USER");
    t.post("/v1/groups", &ada.access, json!({"members": [bob.user_id]}))
        .await
        .expect_error(400, "INVALID_REQUEST");
    t.post(
        "/v1/groups",
        &ada.access,
        json!({"name": "g", "members": ["bob"]}),
    )
    .await
    .expect_error(400, "INVALID_REQUEST");
    let r = t
        .post(
            "/v1/groups",
            &ada.access,
            json!({"name": "g", "members": [bob.user_id]}),
        )
        .await
        .expect(201);
    let g = r.body["channel_id"].as_u64().unwrap();
    let path = format!("/v1/groups/{g}");

    t.patch("/v1/groups/424242", &ada.access, json!({"name": "x"}))
        .await
        .expect_error(403, "NOT_A_MEMBER");
    t.patch(&path, &cat.access, json!({"name": "x"}))
        .await
        .expect_error(403, "NOT_A_MEMBER");
    t.patch(&path, &ada.access, json!({"name": ""}))
        .await
        .expect_error(400, "INVALID_GROUP_NAME");
    t.post(
        &format!("{path}/members"),
        &ada.access,
        json!({"user_ids": [777777]}),
    )
    .await
    .expect_error(404, "UNKNOWN_USER");
    t.patch(
        &format!("{path}/members/{}", cat.user_id),
        &ada.access,
        json!({"role": "admin"}),
    )
    .await
    .expect_error(404, "UNKNOWN_MEMBER");
    t.patch(
        &format!("{path}/members/{}", bob.user_id),
        &ada.access,
        json!({"role": "king"}),
    )
    .await
    .expect_error(400, "INVALID_REQUEST");
    t.patch(
        &format!("{path}/members/{}", ada.user_id),
        &ada.access,
        json!({"role": "member"}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");

    // DMs are not groups.
    let dm = t
        .post("/v1/dms", &ada.access, json!({"user_id": bob.user_id}))
        .await
        .expect(201);
    let dm = dm.body["channel_id"].as_u64().unwrap();
    t.patch(
        &format!("/v1/groups/{dm}"),
        &ada.access,
        json!({"name": "x"}),
    )
    .await
    .expect_error(400, "NOT_A_GROUP");
    t.post(
        &format!("/v1/groups/{dm}/members"),
        &ada.access,
        json!({"user_ids": [cat.user_id]}),
    )
    .await
    .expect_error(400, "NOT_A_GROUP");
    t.call(
        "POST",
        &format!("/v1/groups/{dm}/leave"),
        Some(&ada.access),
        None,
    )
    .await
    .expect_error(400, "NOT_A_GROUP");
    // …and an outsider learns nothing, not even that.
    t.patch(
        &format!("/v1/groups/{dm}"),
        &cat.access,
        json!({"name": "x"}),
    )
    .await
    .expect_error(403, "NOT_A_MEMBER");
    assert_eq!(
        t.state
            .store()
            .channel_members(dm)
            .await
            .unwrap()
            .unwrap()
            .len(),
        2
    );
}

pub async fn ownership_passes_on_when_the_owner_leaves(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let cat = t.signup("cat").await;
    let r = t
        .post(
            "/v1/groups",
            &ada.access,
            json!({"name": "g", "members": [bob.user_id, cat.user_id]}),
        )
        .await
        .expect(201);
    let g = r.body["channel_id"].as_u64().unwrap();
    let path = format!("/v1/groups/{g}");

    // Handing over explicitly: the old owner becomes an admin.
    let r = t
        .patch(
            &format!("{path}/members/{}", bob.user_id),
            &ada.access,
            json!({"role": "owner"}),
        )
        .await
        .expect(200);
    let role = |r: &Resp, u: u64| {
        r.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_id"] == u)
            .unwrap()["role"]
            .clone()
    };
    assert_eq!(role(&r, bob.user_id), "owner");
    assert_eq!(role(&r, ada.user_id), "admin");
    assert_eq!(
        t.get(&format!("/v1/channels/{g}"), &cat.access)
            .await
            .expect(200)
            .body["owner_id"],
        bob.user_id
    );
    t.patch(
        &format!("{path}/members/{}", cat.user_id),
        &ada.access,
        json!({"role": "admin"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");

    // The owner leaves: the admin (ada) takes over before the member (cat).
    t.call("POST", &format!("{path}/leave"), Some(&bob.access), None)
        .await
        .expect(204);
    let r = t
        .get(&format!("/v1/channels/{g}/members"), &cat.access)
        .await
        .expect(200);
    assert_eq!(role(&r, ada.user_id), "owner");
    assert_eq!(member_ids(&r), sorted(vec![ada.user_id, cat.user_id]));
    let ch = t.state.store().channel(g).await.unwrap().unwrap();
    assert_eq!(ch.owner_id, Some(ada.user_id));
    // Down to nobody: the group keeps its id and history, without an owner.
    t.call("POST", &format!("{path}/leave"), Some(&ada.access), None)
        .await
        .expect(204);
    t.call("POST", &format!("{path}/leave"), Some(&cat.access), None)
        .await
        .expect(204);
    assert_eq!(
        t.state.store().channel_members(g).await.unwrap(),
        Some(vec![])
    );
    assert_eq!(
        t.state.store().channel(g).await.unwrap().unwrap().owner_id,
        None
    );
}
