//! `/v1/friends`.

use confab_directory::events::DirectoryEvent;
use serde_json::{json, Value};

use crate::harness::{Backend, Resp, TestApi};

fn ids(r: &Resp, list: &str) -> Vec<u64> {
    r.body[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_u64().unwrap())
        .collect()
}

pub async fn friend_requests_accept_list_and_remove(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let mut events = t.state.events().subscribe();

    let r = t
        .post(
            &format!("/v1/friends/{}", bob.user_id),
            &ada.access,
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(
        r.body,
        json!({"user_id": bob.user_id, "state": "request_sent"})
    );
    // Asking twice changes nothing.
    t.call(
        "POST",
        &format!("/v1/friends/{}", bob.user_id),
        Some(&ada.access),
        None,
    )
    .await
    .expect(200);
    let r = t.get("/v1/friends", &ada.access).await.expect(200);
    assert_eq!(ids(&r, "outgoing"), [bob.user_id]);
    assert!(ids(&r, "friends").is_empty() && ids(&r, "incoming").is_empty());
    let r = t.get("/v1/friends", &bob.access).await.expect(200);
    assert_eq!(ids(&r, "incoming"), [ada.user_id]);
    assert_eq!(r.body["incoming"][0]["username"], "ada");
    assert!(
        t.state
            .store()
            .friends(ada.user_id)
            .await
            .unwrap()
            .is_empty(),
        "pending is not friends"
    );
    assert!(events.try_recv().is_err(), "a request publishes nothing");

    let r = t
        .call(
            "POST",
            &format!("/v1/friends/{}/accept", ada.user_id),
            Some(&bob.access),
            None,
        )
        .await
        .expect(200);
    assert_eq!(r.body["state"], "accepted");
    let (a, b2) = (ada.user_id.min(bob.user_id), ada.user_id.max(bob.user_id));
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::FriendshipChanged {
            a,
            b: b2,
            friends: true
        }
    );
    for (me, other) in [(&ada, &bob), (&bob, &ada)] {
        let r = t.get("/v1/friends", &me.access).await.expect(200);
        assert_eq!(ids(&r, "friends"), [other.user_id]);
        assert!(ids(&r, "incoming").is_empty() && ids(&r, "outgoing").is_empty());
        assert_eq!(
            t.state.store().friends(me.user_id).await.unwrap(),
            [other.user_id]
        );
    }
    assert!(t
        .state
        .store()
        .are_friends(bob.user_id, ada.user_id)
        .await
        .unwrap());
    // Asking a friend again just says so.
    let r = t
        .post(
            &format!("/v1/friends/{}", bob.user_id),
            &ada.access,
            Value::Null,
        )
        .await;
    assert_eq!(r.expect(200).body["state"], "accepted");
    t.call(
        "POST",
        &format!("/v1/friends/{}/accept", ada.user_id),
        Some(&bob.access),
        None,
    )
    .await
    .expect_error(404, "NO_FRIEND_REQUEST");

    t.delete(&format!("/v1/friends/{}", bob.user_id), &ada.access)
        .await
        .expect(204);
    assert_eq!(
        events.try_recv().unwrap(),
        DirectoryEvent::FriendshipChanged {
            a,
            b: b2,
            friends: false
        }
    );
    assert!(t
        .state
        .store()
        .friends(bob.user_id)
        .await
        .unwrap()
        .is_empty());
    t.delete(&format!("/v1/friends/{}", bob.user_id), &ada.access)
        .await
        .expect_error(404, "NOT_FRIENDS");
    let r = t.get("/v1/friends", &bob.access).await.expect(200);
    assert!(ids(&r, "friends").is_empty());
}

pub async fn friend_requests_decline_cross_and_refuse(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let cat = t.signup("cat").await;

    t.call(
        "POST",
        &format!("/v1/friends/{}", bob.user_id),
        Some(&ada.access),
        None,
    )
    .await
    .expect(200);
    // Only the addressee answers a request.
    t.call(
        "POST",
        &format!("/v1/friends/{}/accept", bob.user_id),
        Some(&ada.access),
        None,
    )
    .await
    .expect_error(404, "NO_FRIEND_REQUEST");
    t.call(
        "POST",
        &format!("/v1/friends/{}/decline", ada.user_id),
        Some(&bob.access),
        None,
    )
    .await
    .expect(204);
    t.call(
        "POST",
        &format!("/v1/friends/{}/decline", ada.user_id),
        Some(&bob.access),
        None,
    )
    .await
    .expect_error(404, "NO_FRIEND_REQUEST");
    assert!(ids(
        &t.get("/v1/friends", &ada.access).await.expect(200),
        "outgoing"
    )
    .is_empty());

    // Two requests crossing make a friendship.
    t.call(
        "POST",
        &format!("/v1/friends/{}", cat.user_id),
        Some(&ada.access),
        None,
    )
    .await
    .expect(200);
    let r = t
        .call(
            "POST",
            &format!("/v1/friends/{}", ada.user_id),
            Some(&cat.access),
            None,
        )
        .await
        .expect(200);
    assert_eq!(r.body["state"], "accepted");
    assert_eq!(
        t.state.store().friends(cat.user_id).await.unwrap(),
        [ada.user_id]
    );

    // Withdrawing one's own request.
    t.call(
        "POST",
        &format!("/v1/friends/{}", cat.user_id),
        Some(&bob.access),
        None,
    )
    .await
    .expect(200);
    t.delete(&format!("/v1/friends/{}", cat.user_id), &bob.access)
        .await
        .expect(204);
    assert!(ids(
        &t.get("/v1/friends", &cat.access).await.expect(200),
        "incoming"
    )
    .is_empty());

    t.call(
        "POST",
        &format!("/v1/friends/{}", ada.user_id),
        Some(&ada.access),
        None,
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    t.call("POST", "/v1/friends/424242", Some(&ada.access), None)
        .await
        .expect_error(404, "UNKNOWN_USER");
    t.call("POST", "/v1/friends/nobody", Some(&ada.access), None)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.call(
        "POST",
        "/v1/friends/424242/decline",
        Some(&ada.access),
        None,
    )
    .await
    .expect_error(404, "NO_FRIEND_REQUEST");
    t.call("GET", "/v1/friends", None, None)
        .await
        .expect_error(401, "UNAUTHENTICATED");
}

/// The gateway looks up the friends of many opening sessions at once: each
/// user asked for gets exactly their accepted friends (not pending
/// requests), whether the other side of a friendship is asked for too or
/// not, and users with none get an empty list.
pub async fn friends_of_many_answers_each_user_asked_for(b: Backend) {
    let t = TestApi::start(b).await;
    let store = t.state.store();
    let ada = t.signup("ada").await.user_id;
    let bob = t.signup("bob").await.user_id;
    let cat = t.signup("cat").await.user_id;
    let dan = t.signup("dan").await.user_id;
    let eve = t.signup("eve").await.user_id;
    for (a, b) in [(ada, bob), (ada, cat), (cat, dan)] {
        store.request_friend(a, b).await.unwrap();
        store.accept_friend(b, a).await.unwrap();
    }
    // Pending, not a friendship.
    store.request_friend(eve, ada).await.unwrap();

    let found = store.friends_of_many(&[ada, cat, eve, bob]).await.unwrap();
    assert_eq!(found.len(), 4);
    assert_eq!(found[&ada], sorted(vec![bob, cat]));
    assert_eq!(found[&cat], sorted(vec![ada, dan]));
    assert_eq!(found[&bob], vec![ada]);
    assert_eq!(found[&eve], Vec::<u64>::new());
    // The same as asking one by one.
    for u in [ada, bob, cat, dan, eve] {
        let one = store.friends_of_many(&[u]).await.unwrap();
        assert_eq!(one[&u], store.friends(u).await.unwrap(), "user {u}");
    }
    // More users than one query takes.
    let many: Vec<u64> = (0..1_000).map(|i| 1_000_000 + i).chain([dan]).collect();
    let found = store.friends_of_many(&many).await.unwrap();
    assert_eq!(found.len(), many.len());
    assert_eq!(found[&dan], vec![cat]);
    assert!(found[&1_000_000].is_empty());
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}
