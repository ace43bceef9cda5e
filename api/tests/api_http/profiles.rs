//! `/v1/me` and `/v1/users`.

use serde_json::json;

use crate::harness::{Backend, TestApi};

pub async fn me_can_be_read_and_patched(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let r = t
        .patch(
            "/v1/me",
            &ada.access,
            json!({"display_name": "Ada Lovelace"}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["display_name"], "Ada Lovelace");
    assert_eq!(r.body["username"], "ada");
    let r = t.get("/v1/me", &ada.access).await.expect(200);
    assert_eq!(r.body["display_name"], "Ada Lovelace");
    assert_eq!(r.body["user_id"], ada.user_id);
    assert!(r.body["created_at"].as_u64().unwrap() > 1_600_000_000);

    // Absent fields are kept.
    let r = t.patch("/v1/me", &ada.access, json!({})).await.expect(200);
    assert_eq!(r.body["display_name"], "Ada Lovelace");
    for bad in [
        json!(""),
        json!("   "),
        json!("x".repeat(65)),
        json!("tab\there"),
    ] {
        t.patch("/v1/me", &ada.access, json!({"display_name": bad}))
            .await
            .expect_error(400, "INVALID_DISPLAY_NAME");
    }
    t.patch("/v1/me", &ada.access, json!({"username": "eve"}))
        .await
        .expect_error(400, "INVALID_REQUEST");
    t.patch(
        "/v1/me",
        &ada.access,
        json!({"display_name": "é".repeat(64)}),
    )
    .await
    .expect(200);
    t.call("PATCH", "/v1/me", None, Some(json!({"display_name": "x"})))
        .await
        .expect_error(401, "UNAUTHENTICATED");
    t.call("GET", "/v1/me", None, None)
        .await
        .expect_error(401, "UNAUTHENTICATED");
}

pub async fn users_can_be_looked_up_and_searched(b: Backend) {
    let t = TestApi::start(b).await;
    let ada = t.signup("ada").await;
    let alan = t.signup("alan.turing").await;
    t.signup("al_khwarizmi").await;
    t.signup("bob").await;
    t.signup("ala").await;

    let r = t
        .get(&format!("/v1/users/{}", alan.user_id), &ada.access)
        .await
        .expect(200);
    assert_eq!(r.body["username"], "alan.turing");
    assert_eq!(r.body["display_name"], "alan.turing");
    assert!(r.body.get("password_hash").is_none());
    t.get("/v1/users/999999", &ada.access)
        .await
        .expect_error(404, "UNKNOWN_USER");
    t.get("/v1/users/18446744073709551615", &ada.access)
        .await
        .expect_error(404, "UNKNOWN_USER");
    t.get("/v1/users/abc", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.get("/v1/users/-1", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    // One spelling per id: no sign, no leading zeros, no spaces.
    let me = ada.user_id;
    for bad in [
        format!("+{me}"),
        format!("0{me}"),
        format!("%20{me}"),
        format!("{me}%20"),
        // The id's own digits, percent-encoded.
        me.to_string()
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>(),
    ] {
        let r = t.get(&format!("/v1/users/{bad}"), &ada.access).await;
        assert_eq!((r.status, r.code()), (400, "INVALID_PARAMETER"), "{bad}");
    }
    t.get(&format!("/v1/users/{me}"), &ada.access)
        .await
        .expect(200);
    t.call("GET", &format!("/v1/users/{}", alan.user_id), None, None)
        .await
        .expect_error(401, "UNAUTHENTICATED");

    let names = |r: &crate::harness::Resp| -> Vec<String> {
        r.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = t.get("/v1/users?prefix=al", &ada.access).await.expect(200);
    assert_eq!(
        names(&r),
        ["al_khwarizmi", "ala", "alan.turing"],
        "byte order"
    );
    let r = t
        .get("/v1/users?prefix=al&limit=2", &ada.access)
        .await
        .expect(200);
    assert_eq!(names(&r), ["al_khwarizmi", "ala"]);
    let r = t.get("/v1/users?prefix=al_", &ada.access).await.expect(200);
    assert_eq!(
        names(&r),
        ["al_khwarizmi"],
        "'_' is literal, not a LIKE wildcard"
    );
    let r = t
        .get("/v1/users?prefix=alan.", &ada.access)
        .await
        .expect(200);
    assert_eq!(names(&r), ["alan.turing"]);
    let r = t.get("/v1/users?prefix=zed", &ada.access).await.expect(200);
    assert_eq!(names(&r), Vec::<String>::new());
    let r = t.get("/v1/users?prefix=a", &ada.access).await.expect(200);
    assert_eq!(names(&r), ["ada", "al_khwarizmi", "ala", "alan.turing"]);

    t.get("/v1/users?prefix=AL", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.get("/v1/users?prefix=", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.get("/v1/users", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.get("/v1/users?prefix=al&limit=0", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.get("/v1/users?prefix=al&limit=101", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.get("/v1/users?prefix=al&limit=x", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    t.get("/v1/users?prefix=al&sort=desc", &ada.access)
        .await
        .expect_error(400, "INVALID_PARAMETER");
}
