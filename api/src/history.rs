//! History over HTTP: `GET /v1/channels/{channel_id}/messages?before=&after=&limit=`,
//! read from the message log, for members only.
//!
//! Pages are in ascending sequence order. Without `before`/`after` the page
//! holds the newest messages; `before=S` the newest below `S`; `after=S` the
//! oldest above `S`. `has_more` says whether more exist past the page in the
//! direction read (older for latest/before, newer for after), so a client
//! pages back with `before=<first seq of the page>` until it is false.

use axum::extract::State;
use axum::Json;
use confab_storage::{ChannelId, HistoryAnchor, Seq, StoredMessage, MAX_PAGE_LIMIT};
use serde::{Deserialize, Serialize};

use super::channels::require_member;
use super::{ApiError, ApiResult, ApiState, Auth, Ids, QueryParams};

/// Page size without `limit`.
pub const DEFAULT_LIMIT: usize = 50;

/// The query. Values are strings so that an empty parameter (`before=`)
/// reads as absent, as in the documented template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// One message, with the field names of the wire protocol's `Message`.
#[derive(Debug, Serialize)]
pub struct MessageView {
    channel_id: u64,
    seq: u64,
    sender_id: u64,
    sender_device: u64,
    client_msg_id: u64,
    timestamp_ms: u64,
    text: String,
}

impl From<StoredMessage> for MessageView {
    fn from(m: StoredMessage) -> Self {
        MessageView {
            channel_id: m.channel.0,
            seq: m.seq.0,
            sender_id: m.sender.0,
            sender_device: m.device.0,
            client_msg_id: m.client_msg_id,
            timestamp_ms: m.timestamp_ms,
            // The gateway validated the text as UTF-8 before storing it.
            text: m.text.to_string(),
        }
    }
}

/// A page of history.
#[derive(Debug, Serialize)]
pub struct HistoryPage {
    messages: Vec<MessageView>,
    has_more: bool,
}

fn number(name: &str, v: Option<String>) -> ApiResult<Option<u64>> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            ApiError::InvalidParameter(format!("{name} must be a non-negative integer"))
        }),
    }
}

/// A page of a channel's messages.
pub async fn messages(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> ApiResult<Json<HistoryPage>> {
    let before = number("before", q.before)?;
    let after = number("after", q.after)?;
    let limit = number("limit", q.limit)?.map_or(DEFAULT_LIMIT, |l| l as usize);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidParameter(format!(
            "limit must be 1 to {MAX_PAGE_LIMIT}"
        )));
    }
    let anchor = match (before, after) {
        (None, None) => HistoryAnchor::Latest,
        (Some(b), None) => HistoryAnchor::Before(Seq(b)),
        (None, Some(a)) => HistoryAnchor::After(Seq(a)),
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameter(
                "give before or after, not both".into(),
            ))
        }
    };
    require_member(&state, channel_id, auth.user_id).await?;
    let log = state.log().clone();
    // RocksDB reads block; keep them off the async runtime's thread.
    let page = tokio::task::spawn_blocking(move || {
        log.channel_history(ChannelId(channel_id), anchor, limit)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(HistoryPage {
        messages: page.items.into_iter().map(MessageView::from).collect(),
        has_more: page.has_more,
    }))
}
