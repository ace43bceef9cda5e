//! `GET /v1/channels/{id}/messages`: messages appended to the RocksDB log
//! directly, read back page by page.

use confab_storage::{AppendRequest, ChannelId, DeviceId, MessageLog, UserId};
use confab_types::Seq;
use serde_json::json;

use crate::harness::{Backend, Resp, TestApi};

fn seqs(r: &Resp) -> Vec<u64> {
    r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

pub async fn history_pages_with_before_after_and_has_more(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let r = t
        .post(
            "/v1/groups",
            &ada.access,
            json!({"name": "g", "members": [bob.user_id]}),
        )
        .await
        .expect(201);
    let g = r.body["channel_id"].as_u64().unwrap();
    let r = t
        .post("/v1/groups", &ada.access, json!({"name": "quiet"}))
        .await
        .expect(201);
    let quiet = r.body["channel_id"].as_u64().unwrap();

    let batch: Vec<AppendRequest> = (1..=25u64)
        .map(|i| AppendRequest {
            channel: ChannelId(g),
            sender: UserId(if i % 2 == 0 { bob.user_id } else { ada.user_id }),
            device: DeviceId(7),
            client_msg_id: 1000 + i,
            recipients: vec![UserId(ada.user_id), UserId(bob.user_id)],
            text: format!("message {i} ✓").into(),
            push_to: Vec::new(),
        })
        .collect();
    let outcomes = t.log.append(&batch).unwrap();
    assert_eq!(outcomes.last().unwrap().seq, Seq(25));

    let page = |q: &str| {
        let path = format!("/v1/channels/{g}/messages{q}");
        let (t, token) = (&t, &bob.access);
        async move { t.get(&path, token).await }
    };
    let r = page("").await.expect(200);
    assert_eq!(seqs(&r), (1..=25).collect::<Vec<_>>());
    assert_eq!(r.body["has_more"], false);
    let m = &r.body["messages"][1];
    assert_eq!(m["channel_id"], g);
    assert_eq!(m["sender_id"], bob.user_id);
    assert_eq!(m["sender_device"], 7);
    assert_eq!(m["client_msg_id"], 1002);
    assert_eq!(m["text"], "message 2 ✓");
    assert!(m["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);

    // Paging back from the newest.
    let r = page("?limit=10").await.expect(200);
    assert_eq!(seqs(&r), (16..=25).collect::<Vec<_>>());
    assert_eq!(r.body["has_more"], true);
    let r = page("?before=16&limit=10").await.expect(200);
    assert_eq!(seqs(&r), (6..=15).collect::<Vec<_>>());
    assert_eq!(r.body["has_more"], true);
    let r = page("?before=6&limit=10").await.expect(200);
    assert_eq!(seqs(&r), (1..=5).collect::<Vec<_>>());
    assert_eq!(r.body["has_more"], false);
    // Catching up forwards.
    let r = page("?after=20&limit=3").await.expect(200);
    assert_eq!(seqs(&r), [21, 22, 23]);
    assert_eq!(r.body["has_more"], true);
    let r = page("?after=22&limit=3").await.expect(200);
    assert_eq!(seqs(&r), [23, 24, 25]);
    assert_eq!(r.body["has_more"], false);
    let r = page("?after=25").await.expect(200);
    assert_eq!(seqs(&r), Vec::<u64>::new());
    assert_eq!(r.body["has_more"], false);
    // Empty parameters, as in the documented template, are absent.
    let r = page("?before=&after=&limit=").await.expect(200);
    assert_eq!(seqs(&r).len(), 25);
    let r = page("?limit=1000").await.expect(200);
    assert_eq!(seqs(&r).len(), 25);

    for bad in [
        "?before=5&after=1",
        "?limit=0",
        "?limit=1001",
        "?before=abc",
        "?after=-1",
        "?cursor=3",
    ] {
        page(bad).await.expect_error(400, "INVALID_PARAMETER");
    }
    let r = t
        .get(&format!("/v1/channels/{quiet}/messages"), &ada.access)
        .await
        .expect(200);
    assert_eq!(r.body, json!({"messages": [], "has_more": false}));
    t.get(&format!("/v1/channels/{quiet}/messages"), &bob.access)
        .await
        .expect_error(403, "NOT_A_MEMBER");
    t.get("/v1/channels/999999/messages", &bob.access)
        .await
        .expect_error(403, "NOT_A_MEMBER");
    t.get("/v1/channels/x/messages", &bob.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
}

pub async fn receipts_show_each_members_read_mark(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    let cy = t.signup("cyd").await;
    let r = t
        .post(
            "/v1/groups",
            &ada.access,
            json!({"name": "g", "members": [bob.user_id]}),
        )
        .await
        .expect(201);
    let g = r.body["channel_id"].as_u64().unwrap();
    let path = format!("/v1/channels/{g}/receipts");
    let r = t.get(&path, &ada.access).await.expect(200);
    assert_eq!(r.body, json!({"receipts": []}));
    // Marks as the gateway stores them on `Read`; they only move forward.
    t.log
        .set_read_up_to(ChannelId(g), UserId(bob.user_id), Seq(7))
        .unwrap();
    t.log
        .set_read_up_to(ChannelId(g), UserId(ada.user_id), Seq(3))
        .unwrap();
    t.log
        .set_read_up_to(ChannelId(g), UserId(bob.user_id), Seq(5))
        .unwrap();
    let r = t.get(&path, &bob.access).await.expect(200);
    let mut marks: Vec<(u64, u64)> = r.body["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_u64().unwrap(),
                m["read_up_to"].as_u64().unwrap(),
            )
        })
        .collect();
    marks.sort();
    let mut want = vec![(ada.user_id, 3), (bob.user_id, 7)];
    want.sort();
    assert_eq!(marks, want);
    t.get(&path, &cy.access)
        .await
        .expect_error(403, "NOT_A_MEMBER");
    t.get("/v1/channels/999999/receipts", &cy.access)
        .await
        .expect_error(403, "NOT_A_MEMBER");
}
