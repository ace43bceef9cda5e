//! The HTTP API end to end: a real server on 127.0.0.1:0, a real store and
//! a real message log, a real HTTP client. Every case runs twice, once on
//! SQLite (`sqlite::…`) and once on PostgreSQL (`postgres::…`, against the
//! server in `CONFAB_TEST_PG_URL`; without it those tests fail, they are
//! never skipped).
//!
//! Run: `CONFAB_TEST_PG_URL="$(scripts/postgres.sh)" cargo test -p confab-api --test api_http`

mod harness;

mod accounts;
mod authz;
mod channels;
mod devices;
mod friends;
mod groups;
mod history;
mod misc;
mod mute;
mod profiles;

/// Instantiates each case once per backend: `sqlite::<module>::<case>` and
/// `postgres::<module>::<case>`.
macro_rules! both_backends {
    ($($module:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        mod sqlite {
            $(mod $module {
                $(#[tokio::test]
                async fn $case() {
                    crate::$module::$case(crate::harness::Backend::Sqlite).await;
                })*
            })*
        }
        mod postgres {
            $(mod $module {
                $(#[tokio::test]
                async fn $case() {
                    crate::$module::$case(crate::harness::Backend::Postgres).await;
                })*
            })*
        }
    };
}

both_backends! {
    accounts: [
        signup_returns_working_tokens,
        signup_validates_its_input,
        login_succeeds_and_fails_alike_for_unknown_users,
        login_is_rate_limited_per_username_and_per_ip,
        signup_is_rate_limited_per_address,
        refresh_rotates_and_a_reused_token_revokes_the_session,
        logout_revokes_the_session_at_once,
        expired_forged_and_missing_tokens_are_refused,
        access_tokens_expire_in_real_time,
        revocations_reach_other_nodes,
    ],
    profiles: [
        me_can_be_read_and_patched,
        users_can_be_looked_up_and_searched,
    ],
    devices: [
        devices_register_list_and_unregister,
    ],
    mute: [
        mute_is_per_member_and_members_only,
    ],
    friends: [
        friend_requests_accept_list_and_remove,
        friend_requests_decline_cross_and_refuse,
        friends_of_many_answers_each_user_asked_for,
    ],
    channels: [
        dm_channel_is_created_once_per_pair,
        channels_are_listed_with_roles_and_peers,
    ],
    groups: [
        groups_are_managed_by_owner_and_admins,
        group_full_beyond_100_members_including_the_creator,
        group_input_is_validated,
        ownership_passes_on_when_the_owner_leaves,
    ],
    authz: [
        authorization_matrix,
    ],
    history: [
        history_pages_with_before_after_and_has_more,
        receipts_show_each_members_read_mark,
    ],
    misc: [
        discovery_advertises_the_gateway,
        openapi_document_covers_every_route,
        request_bodies_are_size_limited,
        unknown_routes_and_methods_answer_in_json,
        store_publishes_directory_events,
    ],
}
