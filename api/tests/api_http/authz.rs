//! The authorization matrix: every endpoint that touches a channel, called
//! by a member, a non-member, a removed member, with an expired token and
//! with a revoked token.

use serde_json::{json, Value};

use crate::harness::{now, session_id_of, Backend, TestApi};

/// (method, path template, body) of every channel endpoint; `{c}` is the
/// channel, `{u}` a member to act on.
fn endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/v1/channels/{c}", None),
        ("GET", "/v1/channels/{c}/members", None),
        ("GET", "/v1/channels/{c}/messages", None),
        ("GET", "/v1/channels/{c}/messages?before=10&limit=5", None),
        ("PATCH", "/v1/groups/{c}", Some(json!({"name": "renamed"}))),
        (
            "POST",
            "/v1/groups/{c}/members",
            Some(json!({"user_ids": []})),
        ),
        (
            "PATCH",
            "/v1/groups/{c}/members/{u}",
            Some(json!({"role": "member"})),
        ),
        ("DELETE", "/v1/groups/{c}/members/{u}", None),
        ("POST", "/v1/groups/{c}/leave", None),
    ]
}

pub async fn authorization_matrix(b: Backend) {
    let t = TestApi::start(b).await;
    let owner = t.signup("owner").await;
    let member = t.signup("member").await;
    let outsider = t.signup("outsider").await;
    let removed = t.signup("removed").await;
    let target = t.signup("target").await;
    let r = t
        .post(
            "/v1/groups",
            &owner.access,
            json!({"name": "g", "members": [member.user_id, removed.user_id, target.user_id]}),
        )
        .await
        .expect(201);
    let g = r.body["channel_id"].as_u64().unwrap();
    // The removed member read the group while in it…
    t.get(&format!("/v1/channels/{g}/members"), &removed.access)
        .await
        .expect(200);
    t.delete(
        &format!("/v1/groups/{g}/members/{}", removed.user_id),
        &owner.access,
    )
    .await
    .expect(204);
    // …and history exists to be leaked, were the checks missing.
    use confab_storage::{AppendRequest, ChannelId, DeviceId, MessageLog, UserId};
    t.log
        .append(&[AppendRequest {
            channel: ChannelId(g),
            sender: UserId(owner.user_id),
            device: DeviceId(1),
            client_msg_id: 1,
            recipients: vec![UserId(owner.user_id), UserId(member.user_id)],
            text: "secret plans".into(),
            push_to: Vec::new(),
        }])
        .unwrap();

    let expired = t.mint(
        owner.user_id,
        session_id_of(&owner.access),
        now() - 7200,
        900,
    );
    let revoked = t.login("owner").await;
    t.call("POST", "/v1/logout", Some(&revoked.access), None)
        .await
        .expect(204);

    let fill = |p: &str, c: u64| {
        p.replace("{c}", &c.to_string())
            .replace("{u}", &target.user_id.to_string())
    };
    for (method, template, body) in endpoints() {
        let path = fill(template, g);
        let call = |token: &str| {
            let (path, body, token) = (path.clone(), body.clone(), token.to_owned());
            let t = &t;
            async move { t.call(method, &path, Some(&token), body).await }
        };
        let what = format!("{method} {path}");

        let r = call(&outsider.access).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "NOT_A_MEMBER"),
            "outsider: {what}: {}",
            r.body
        );
        let r = call(&removed.access).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "NOT_A_MEMBER"),
            "removed member: {what}: {}",
            r.body
        );
        let r = call(&expired).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "TOKEN_EXPIRED"),
            "expired token: {what}: {}",
            r.body
        );
        let r = call(&revoked.access).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "TOKEN_REVOKED"),
            "revoked token: {what}: {}",
            r.body
        );
        let r = t.call(method, &path, None, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "UNAUTHENTICATED"),
            "no token: {what}"
        );
        let r = t
            .call(
                method,
                &fill(template, 999_999),
                Some(&member.access),
                body.clone(),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "NOT_A_MEMBER"),
            "an unknown channel answers as one the caller is not in: {what}"
        );
        for r in [call(&outsider.access).await, call(&removed.access).await] {
            let text = r.body.to_string();
            assert!(
                !text.contains("secret") && !text.contains("members"),
                "{what} leaked: {text}"
            );
        }
    }

    // A member reads; the same requests, with the member's role, are
    // refused for managing (not a role problem for reading).
    for template in [
        "/v1/channels/{c}",
        "/v1/channels/{c}/members",
        "/v1/channels/{c}/messages",
    ] {
        t.get(&fill(template, g), &member.access).await.expect(200);
    }
    let r = t
        .get(&format!("/v1/channels/{g}/messages"), &member.access)
        .await
        .expect(200);
    assert_eq!(r.body["messages"][0]["text"], "secret plans");
    t.patch(
        &format!("/v1/groups/{g}"),
        &member.access,
        json!({"name": "x"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // The owner manages.
    t.patch(
        &format!("/v1/groups/{g}"),
        &owner.access,
        json!({"name": "renamed"}),
    )
    .await
    .expect(200);

    // DMs: only the pair.
    let dm = t
        .post("/v1/dms", &owner.access, json!({"user_id": member.user_id}))
        .await
        .expect(201);
    let dm = dm.body["channel_id"].as_u64().unwrap();
    for template in [
        "/v1/channels/{c}",
        "/v1/channels/{c}/members",
        "/v1/channels/{c}/messages",
    ] {
        t.get(&fill(template, dm), &member.access).await.expect(200);
        t.get(&fill(template, dm), &outsider.access)
            .await
            .expect_error(403, "NOT_A_MEMBER");
    }
}
