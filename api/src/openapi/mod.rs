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

mod operations;
mod schemas;

use operations::operations;
use schemas::schemas;

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
        "403": error("NOT_A_MEMBER (also for a channel that does not exist) or FORBIDDEN \
                      (role does not allow it)"),
        "404": error("UNKNOWN_USER, UNKNOWN_MEMBER, UNKNOWN_DEVICE, \
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
