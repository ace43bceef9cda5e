//! The OpenAPI 3.1 description of the API, served at `/v1/openapi.json`.
//!
//! Written by hand (serde_json) rather than derived, so that it documents
//! the contract we mean, including every error code; the integration tests
//! check that each path and method in it is routed and that every route is
//! in it, so it cannot silently drift from the router.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Map, Value};

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn id_param(name: &str, what: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true,
        "description": what,
        "schema": { "type": "integer", "format": "int64", "minimum": 1 }
    })
}

fn query_param(name: &str, what: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": what, "schema": schema })
}

/// One operation.
struct Op {
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    auth: bool,
    params: Vec<Value>,
    body: Option<&'static str>,
    ok: (&'static str, &'static str, Option<&'static str>),
    errors: &'static [&'static str],
}

impl Op {
    fn to_json(&self) -> Value {
        let mut responses = Map::new();
        let (status, description, schema) = self.ok;
        let mut ok = json!({ "description": description });
        if let Some(s) = schema {
            ok["content"] = json!({ "application/json": { "schema": schema_ref(s) } });
        }
        responses.insert(status.to_owned(), ok);
        let mut errors: Vec<&str> = self.errors.to_vec();
        if self.auth {
            errors.push("401");
        }
        if self.body.is_some() {
            errors.extend(["400", "413", "415"]);
        }
        errors.sort_unstable();
        errors.dedup();
        for e in errors {
            responses.insert(
                e.to_owned(),
                json!({ "$ref": format!("#/components/responses/{e}") }),
            );
        }
        let mut op = json!({
            "operationId": self.id,
            "summary": self.summary,
            "tags": [self.tag],
            "responses": responses,
        });
        if !self.params.is_empty() {
            op["parameters"] = Value::Array(self.params.clone());
        }
        if let Some(body) = self.body {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema_ref(body) } }
            });
        }
        op["security"] = if self.auth {
            json!([{ "bearerAuth": [] }])
        } else {
            json!([])
        };
        op
    }
}

fn operations() -> Vec<(&'static str, &'static str, Op)> {
    let channel = || id_param("channel_id", "The channel (DM or group).");
    let user = || id_param("user_id", "The user.");
    vec![
        (
            "/v1/signup",
            "post",
            Op {
                id: "signup",
                summary: "Create an account and log it in",
                tag: "accounts",
                auth: false,
                params: vec![],
                body: Some("SignupRequest"),
                ok: ("201", "Created; tokens for the new session", Some("Tokens")),
                errors: &["409"],
            },
        ),
        (
            "/v1/login",
            "post",
            Op {
                id: "login",
                summary: "Log in (rate-limited per username and per IP)",
                tag: "accounts",
                auth: false,
                params: vec![],
                body: Some("LoginRequest"),
                ok: ("200", "Tokens for a new session", Some("Tokens")),
                errors: &["401", "429"],
            },
        ),
        (
            "/v1/token/refresh",
            "post",
            Op {
                id: "refreshToken",
                summary: "Exchange a refresh token for new tokens (rotation)",
                tag: "accounts",
                auth: false,
                params: vec![],
                body: Some("RefreshRequest"),
                ok: ("200", "New access and refresh tokens", Some("Tokens")),
                errors: &["401"],
            },
        ),
        (
            "/v1/logout",
            "post",
            Op {
                id: "logout",
                summary: "Revoke the caller's session",
                tag: "accounts",
                auth: true,
                params: vec![],
                body: None,
                ok: ("204", "Revoked", None),
                errors: &[],
            },
        ),
        (
            "/v1/me",
            "get",
            Op {
                id: "getMe",
                summary: "The caller's profile",
                tag: "users",
                auth: true,
                params: vec![],
                body: None,
                ok: ("200", "Profile", Some("User")),
                errors: &[],
            },
        ),
        (
            "/v1/me",
            "patch",
            Op {
                id: "patchMe",
                summary: "Change the caller's display name",
                tag: "users",
                auth: true,
                params: vec![],
                body: Some("PatchMe"),
                ok: ("200", "Updated profile", Some("User")),
                errors: &[],
            },
        ),
        (
            "/v1/users",
            "get",
            Op {
                id: "searchUsers",
                summary: "Search users by username prefix",
                tag: "users",
                auth: true,
                params: vec![
                    json!({ "name": "prefix", "in": "query", "required": true,
                        "description": "1 to 32 characters of a-z, 0-9, '_', '.', '-'",
                        "schema": { "type": "string", "pattern": "^[a-z0-9_.-]{1,32}$" } }),
                    query_param(
                        "limit",
                        "Page size, 1 to 100 (default 20)",
                        json!({ "type": "integer", "minimum": 1, "maximum": 100 }),
                    ),
                ],
                body: None,
                ok: ("200", "Matching users in username order", Some("UserList")),
                errors: &["400"],
            },
        ),
        (
            "/v1/users/{user_id}",
            "get",
            Op {
                id: "getUser",
                summary: "A user's profile",
                tag: "users",
                auth: true,
                params: vec![user()],
                body: None,
                ok: ("200", "Profile", Some("User")),
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/devices",
            "get",
            Op {
                id: "listDevices",
                summary: "The caller's devices",
                tag: "devices",
                auth: true,
                params: vec![],
                body: None,
                ok: ("200", "Devices", Some("DeviceList")),
                errors: &[],
            },
        ),
        (
            "/v1/devices",
            "post",
            Op {
                id: "registerDevice",
                summary: "Register a device and its push token (idempotent per token)",
                tag: "devices",
                auth: true,
                params: vec![],
                body: Some("RegisterDevice"),
                ok: ("200", "The device", Some("Device")),
                errors: &[],
            },
        ),
        (
            "/v1/devices/{device_id}",
            "delete",
            Op {
                id: "unregisterDevice",
                summary: "Unregister one of the caller's devices",
                tag: "devices",
                auth: true,
                params: vec![id_param("device_id", "The device.")],
                body: None,
                ok: ("204", "Unregistered", None),
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/friends",
            "get",
            Op {
                id: "listFriends",
                summary: "Friends and pending requests",
                tag: "friends",
                auth: true,
                params: vec![],
                body: None,
                ok: ("200", "Friends", Some("FriendList")),
                errors: &[],
            },
        ),
        (
            "/v1/friends/{user_id}",
            "post",
            Op {
                id: "requestFriend",
                summary: "Send a friend request (accepts theirs if they asked first)",
                tag: "friends",
                auth: true,
                params: vec![user()],
                body: None,
                ok: ("200", "Where the two users stand", Some("FriendState")),
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/friends/{user_id}",
            "delete",
            Op {
                id: "removeFriend",
                summary: "Unfriend, or withdraw the caller's request",
                tag: "friends",
                auth: true,
                params: vec![user()],
                body: None,
                ok: ("204", "Removed", None),
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/friends/{user_id}/accept",
            "post",
            Op {
                id: "acceptFriend",
                summary: "Accept a pending request",
                tag: "friends",
                auth: true,
                params: vec![user()],
                body: None,
                ok: ("200", "Now friends", Some("FriendState")),
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/friends/{user_id}/decline",
            "post",
            Op {
                id: "declineFriend",
                summary: "Decline a pending request",
                tag: "friends",
                auth: true,
                params: vec![user()],
                body: None,
                ok: ("204", "Declined", None),
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/dms",
            "post",
            Op {
                id: "openDm",
                summary: "Get or create the DM channel with a user (idempotent)",
                tag: "channels",
                auth: true,
                params: vec![],
                body: Some("OpenDm"),
                ok: ("200", "The channel existed", Some("Dm")),
                errors: &["404"],
            },
        ),
        (
            "/v1/groups",
            "post",
            Op {
                id: "createGroup",
                summary: "Create a group with members (at most 100 including the creator)",
                tag: "groups",
                auth: true,
                params: vec![],
                body: Some("CreateGroup"),
                ok: ("201", "Created", Some("Group")),
                errors: &["404", "409"],
            },
        ),
        (
            "/v1/groups/{channel_id}",
            "patch",
            Op {
                id: "renameGroup",
                summary: "Rename a group (owner or admin)",
                tag: "groups",
                auth: true,
                params: vec![channel()],
                body: Some("RenameGroup"),
                ok: ("200", "Renamed", Some("Group")),
                errors: &["403", "404"],
            },
        ),
        (
            "/v1/groups/{channel_id}/members",
            "post",
            Op {
                id: "addMembers",
                summary: "Add members (owner or admin)",
                tag: "groups",
                auth: true,
                params: vec![channel()],
                body: Some("AddMembers"),
                ok: ("200", "Members after the change", Some("MemberList")),
                errors: &["403", "404", "409"],
            },
        ),
        (
            "/v1/groups/{channel_id}/members/{user_id}",
            "delete",
            Op {
                id: "removeMember",
                summary: "Remove a member (owner: anyone; admin: plain members)",
                tag: "groups",
                auth: true,
                params: vec![channel(), user()],
                body: None,
                ok: ("204", "Removed", None),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/groups/{channel_id}/members/{user_id}",
            "patch",
            Op {
                id: "setMemberRole",
                summary: "Change a member's role (owner only; `owner` hands the group over)",
                tag: "groups",
                auth: true,
                params: vec![channel(), user()],
                body: Some("SetRole"),
                ok: ("200", "Members after the change", Some("MemberList")),
                errors: &["403", "404"],
            },
        ),
        (
            "/v1/groups/{channel_id}/leave",
            "post",
            Op {
                id: "leaveGroup",
                summary: "Leave a group",
                tag: "groups",
                auth: true,
                params: vec![channel()],
                body: None,
                ok: ("204", "Left", None),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/channels",
            "get",
            Op {
                id: "listChannels",
                summary: "The caller's channels (DMs and groups)",
                tag: "channels",
                auth: true,
                params: vec![],
                body: None,
                ok: ("200", "Channels", Some("ChannelList")),
                errors: &[],
            },
        ),
        (
            "/v1/channels/{channel_id}",
            "get",
            Op {
                id: "getChannel",
                summary: "One channel (members only)",
                tag: "channels",
                auth: true,
                params: vec![channel()],
                body: None,
                ok: ("200", "The channel", Some("Channel")),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/channels/{channel_id}/members",
            "get",
            Op {
                id: "listMembers",
                summary: "A channel's members (members only)",
                tag: "channels",
                auth: true,
                params: vec![channel()],
                body: None,
                ok: ("200", "Members", Some("MemberList")),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/channels/{channel_id}/messages",
            "get",
            Op {
                id: "channelHistory",
                summary: "A page of a channel's messages (members only)",
                tag: "history",
                auth: true,
                params: vec![
                    channel(),
                    query_param(
                        "before",
                        "Messages with a sequence below this one (newest first selected)",
                        json!({ "type": "integer", "minimum": 0 }),
                    ),
                    query_param(
                        "after",
                        "Messages with a sequence above this one (oldest first selected)",
                        json!({ "type": "integer", "minimum": 0 }),
                    ),
                    query_param(
                        "limit",
                        "Page size, 1 to 1000 (default 50)",
                        json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
                    ),
                ],
                body: None,
                ok: (
                    "200",
                    "Messages in ascending sequence order",
                    Some("HistoryPage"),
                ),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/channels/{channel_id}/receipts",
            "get",
            Op {
                id: "channelReceipts",
                summary: "Each member's read mark in a channel (members only)",
                tag: "history",
                auth: true,
                params: vec![channel()],
                body: None,
                ok: ("200", "Read marks by user", Some("Receipts")),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/channels/{channel_id}/mute",
            "get",
            Op {
                id: "getMute",
                summary: "Whether the caller muted push notifications of a channel",
                tag: "channels",
                auth: true,
                params: vec![channel()],
                body: None,
                ok: ("200", "The caller's mute state", Some("MuteState")),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/channels/{channel_id}/mute",
            "put",
            Op {
                id: "setMute",
                summary: "Mute or unmute push notifications of a channel for the caller",
                tag: "channels",
                auth: true,
                params: vec![channel()],
                body: Some("SetMute"),
                ok: ("200", "The new mute state", Some("MuteState")),
                errors: &["400", "403", "404"],
            },
        ),
        (
            "/v1/gateway",
            "get",
            Op {
                id: "discoverGateway",
                summary: "Where to connect (WebSocket URL and QUIC address)",
                tag: "discovery",
                auth: false,
                params: vec![],
                body: None,
                ok: ("200", "Gateways, preferred first", Some("Discovery")),
                errors: &[],
            },
        ),
        (
            "/v1/discovery",
            "get",
            Op {
                id: "discovery",
                summary: "Alias of /v1/gateway",
                tag: "discovery",
                auth: false,
                params: vec![],
                body: None,
                ok: ("200", "Gateways, preferred first", Some("Discovery")),
                errors: &[],
            },
        ),
        (
            "/v1/openapi.json",
            "get",
            Op {
                id: "openapi",
                summary: "This document",
                tag: "discovery",
                auth: false,
                params: vec![],
                body: None,
                ok: ("200", "OpenAPI 3.1 document", None),
                errors: &[],
            },
        ),
    ]
}

fn int64() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0 })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

fn schemas() -> Value {
    let username = json!({ "type": "string", "pattern": "^[a-z0-9_.-]{3,32}$" });
    let password =
        json!({ "type": "string", "minLength": 8, "description": "8 to 256 bytes (UTF-8)" });
    let role = json!({ "type": "string", "enum": ["owner", "admin", "member"] });
    let ids = json!({ "type": "array", "items": int64() });
    json!({
        "Error": object(&["error"], json!({
            "error": object(&["code", "message"], json!({
                "code": { "type": "string", "description": "Stable code (docs/api.md lists them)",
                          "examples": ["GROUP_FULL", "NOT_A_MEMBER"] },
                "message": { "type": "string" }
            }))
        })),
        "SignupRequest": object(&["username", "password"], json!({
            "username": username, "password": password,
            "display_name": { "type": "string", "minLength": 1, "maxLength": 64,
                              "description": "Defaults to the username" }
        })),
        "LoginRequest": object(&["username", "password"], json!({
            "username": { "type": "string" }, "password": { "type": "string" }
        })),
        "RefreshRequest": object(&["refresh_token"], json!({ "refresh_token": { "type": "string" } })),
        "Tokens": object(&["user_id", "access_token", "refresh_token", "token_type", "expires_in"], json!({
            "user_id": int64(),
            "access_token": { "type": "string", "description": "HS256 JWT; send as Authorization: Bearer" },
            "refresh_token": { "type": "string", "description": "Opaque; single use" },
            "token_type": { "const": "Bearer" },
            "expires_in": { "type": "integer", "description": "Seconds until the access token expires" }
        })),
        "User": object(&["user_id", "username", "display_name", "created_at"], json!({
            "user_id": int64(), "username": { "type": "string" },
            "display_name": { "type": "string" }, "created_at": int64()
        })),
        "UserList": object(&["users"], json!({ "users": { "type": "array", "items": schema_ref("User") } })),
        "PatchMe": object(&[], json!({
            "display_name": { "type": "string", "minLength": 1, "maxLength": 64 }
        })),
        "RegisterDevice": object(&["platform", "push_token"], json!({
            "platform": { "type": "string", "enum": ["fcm", "apns", "webhook"] },
            "push_token": { "type": "string", "minLength": 1, "maxLength": 4096,
                            "description": "The provider's token; a webhook's URL" }
        })),
        "Device": object(&["device_id", "platform", "push_token", "created_at", "push_active"], json!({
            "device_id": int64(),
            "platform": { "type": "string", "enum": ["fcm", "apns", "webhook"] },
            "push_token": { "type": "string" }, "created_at": int64(),
            "push_active": { "type": "boolean",
                "description": "false once the provider reported the token dead; registering it again restores it" }
        })),
        "SetMute": object(&["muted"], json!({ "muted": { "type": "boolean" } })),
        "MuteState": object(&["channel_id", "muted"], json!({
            "channel_id": int64(), "muted": { "type": "boolean" }
        })),
        "DeviceList": object(&["devices"], json!({
            "devices": { "type": "array", "items": schema_ref("Device") }
        })),
        "FriendList": object(&["friends", "incoming", "outgoing"], json!({
            "friends": { "type": "array", "items": schema_ref("User") },
            "incoming": { "type": "array", "items": schema_ref("User") },
            "outgoing": { "type": "array", "items": schema_ref("User") }
        })),
        "FriendState": object(&["user_id", "state"], json!({
            "user_id": int64(),
            "state": { "type": "string", "enum": ["request_sent", "accepted"] }
        })),
        "OpenDm": object(&["user_id"], json!({ "user_id": int64() })),
        "Dm": object(&["channel_id", "user_id", "created"], json!({
            "channel_id": int64(), "user_id": int64(), "created": { "type": "boolean" }
        })),
        "CreateGroup": object(&["name"], json!({
            "name": { "type": "string", "minLength": 1, "maxLength": 100 },
            "members": { "type": "array", "items": int64(), "maxItems": 99,
                         "description": "Other members; the creator is added as owner" }
        })),
        "RenameGroup": object(&["name"], json!({
            "name": { "type": "string", "minLength": 1, "maxLength": 100 }
        })),
        "AddMembers": object(&["user_ids"], json!({ "user_ids": ids })),
        "SetRole": object(&["role"], json!({ "role": role })),
        "Group": object(&["channel_id", "name", "owner_id", "created_at"], json!({
            "channel_id": int64(), "name": { "type": "string" },
            "owner_id": { "type": ["integer", "null"], "format": "int64" }, "created_at": int64()
        })),
        "Member": object(&["user_id", "role", "joined_at"], json!({
            "user_id": int64(), "role": role, "joined_at": int64()
        })),
        "MemberList": object(&["channel_id", "members"], json!({
            "channel_id": int64(), "members": { "type": "array", "items": schema_ref("Member") }
        })),
        "Channel": object(&["channel_id", "kind", "role", "member_count", "created_at"], json!({
            "channel_id": int64(),
            "kind": { "type": "string", "enum": ["dm", "group"] },
            "name": { "type": "string", "description": "Groups only" },
            "owner_id": { "type": "integer", "format": "int64", "description": "Groups only" },
            "peer_id": { "type": "integer", "format": "int64", "description": "DMs only: the other user" },
            "role": role, "member_count": int64(), "created_at": int64()
        })),
        "ChannelList": object(&["channels"], json!({
            "channels": { "type": "array", "items": schema_ref("Channel") }
        })),
        "Message": object(&["channel_id", "seq", "sender_id", "sender_device", "client_msg_id",
                            "timestamp_ms", "text"], json!({
            "channel_id": int64(), "seq": int64(), "sender_id": int64(), "sender_device": int64(),
            "client_msg_id": int64(), "timestamp_ms": int64(), "text": { "type": "string" }
        })),
        "HistoryPage": object(&["messages", "has_more"], json!({
            "messages": { "type": "array", "items": schema_ref("Message") },
            "has_more": { "type": "boolean",
                          "description": "More messages exist past this page in the direction read" }
        })),
        "Receipts": object(&["receipts"], json!({
            "receipts": { "type": "array", "items": object(&["user_id", "read_up_to"], json!({
                "user_id": { "type": "integer" },
                "read_up_to": { "type": "integer",
                                "description": "Highest channel sequence the member marked read" }
            })) }
        })),
        "GatewayEndpoint": object(&["websocket_url", "secure_websocket_url", "quic_addr"], json!({
            "websocket_url": { "type": "string" },
            "secure_websocket_url": { "type": "string", "description": "The same port over TLS" },
            "quic_addr": { "type": "string" }
        })),
        "Discovery": object(&["websocket_url", "secure_websocket_url", "quic_addr", "gateways"], json!({
            "websocket_url": { "type": "string" },
            "secure_websocket_url": { "type": "string", "description": "The same port over TLS" },
            "quic_addr": { "type": "string" },
            "gateways": { "type": "array", "items": schema_ref("GatewayEndpoint") }
        }))
    })
}

fn error_responses() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": schema_ref("Error") } }
        })
    };
    json!({
        "400": error("MALFORMED_JSON, INVALID_REQUEST, INVALID_PARAMETER, INVALID_USERNAME, \
                      INVALID_PASSWORD, INVALID_DISPLAY_NAME, INVALID_GROUP_NAME, \
                      INVALID_PUSH_TOKEN, INVALID_ARGUMENT or NOT_A_GROUP"),
        "401": error("UNAUTHENTICATED, INVALID_TOKEN, TOKEN_EXPIRED, TOKEN_REVOKED, \
                      INVALID_CREDENTIALS or INVALID_REFRESH_TOKEN"),
        "403": error("NOT_A_MEMBER or FORBIDDEN (role does not allow it)"),
        "404": error("UNKNOWN_USER, UNKNOWN_CHANNEL, UNKNOWN_MEMBER, UNKNOWN_DEVICE, \
                      NO_FRIEND_REQUEST or NOT_FRIENDS"),
        "409": error("USERNAME_TAKEN or GROUP_FULL"),
        "413": error("PAYLOAD_TOO_LARGE"),
        "415": error("UNSUPPORTED_MEDIA_TYPE (send Content-Type: application/json)"),
        "429": {
            "description": "RATE_LIMITED",
            "headers": { "Retry-After": { "description": "Seconds to wait",
                                          "schema": { "type": "integer" } } },
            "content": { "application/json": { "schema": schema_ref("Error") } }
        }
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (path, method, op) in operations() {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = op.to_json();
    }
    // Opening a DM answers 200 for an existing channel, 201 for a new one.
    paths["/v1/dms"]["post"]["responses"]["201"] = json!({
        "description": "Created by this request",
        "content": { "application/json": { "schema": schema_ref("Dm") } }
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "confab HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts, tokens, friends, DMs, groups, history and service discovery \
                            of a confab node. Errors are {\"error\": {\"code\", \"message\"}}. \
                            See docs/api.md for examples.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "servers": [{ "url": "/" }],
        "tags": [
            { "name": "accounts" }, { "name": "users" }, { "name": "devices" },
            { "name": "friends" }, { "name": "channels" }, { "name": "groups" },
            { "name": "history" }, { "name": "discovery" }
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            },
            "schemas": schemas(),
            "responses": error_responses()
        }
    })
}

/// `GET /v1/openapi.json` (rendered once).
pub async fn serve() -> impl IntoResponse {
    static RENDERED: OnceLock<String> = OnceLock::new();
    let body = RENDERED.get_or_init(|| document().to_string()).as_str();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_operation_ids_are_unique() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
        let mut ids: Vec<String> = Vec::new();
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                ids.push(op["operationId"].as_str().unwrap().to_owned());
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "operationId repeated");
    }

    #[test]
    fn path_parameters_match_the_path_templates() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let mut in_path: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            in_path.sort_unstable();
            for (method, op) in item.as_object().unwrap() {
                let mut declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                declared.sort_unstable();
                assert_eq!(declared, in_path, "{method} {path}");
            }
        }
    }
}
