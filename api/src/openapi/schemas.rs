//! The request and response bodies of the API as OpenAPI schemas.

use serde_json::{json, Value};

use super::schema_ref;

fn int64() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0 })
}

pub(super) fn object(required: &[&str], properties: Value) -> Value {
    json!({
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

pub(super) fn schemas() -> Value {
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
