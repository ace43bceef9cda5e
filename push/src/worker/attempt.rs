//! One notification round of a group, run as its own task: the directory
//! lookups (devices, mute) and the send to each device through its
//! provider. It touches no worker state, only the shared context, so it can
//! run concurrently with the worker loop.

use std::time::Duration;

use confab_storage::{ChannelId, HistoryAnchor, OutboxEntry};
use tracing::{debug, info, warn};

use super::{Attempt, Ctx, Verdict};
use crate::provider::{Notification, Outcome, Preview, PREVIEW_CHARS};

/// One notification round: devices, mute check, then each device through
/// its provider.
pub(super) async fn attempt_group(ctx: &Ctx, a: Attempt) -> Verdict {
    let store_retry = |e: confab_directory::store::StoreError| {
        warn!(error = %e, "push: directory lookup failed; retrying");
        Verdict::Tried {
            done: Vec::new(),
            sent: false,
            retry: Some(None),
        }
    };
    // Devices first: most users of a busy node have none registered, and
    // then the mute lookup is saved.
    let devices = match ctx.store.devices(a.user).await {
        Ok(d) => d,
        Err(e) => return store_retry(e),
    };
    let devices: Vec<_> = devices
        .into_iter()
        .filter(|d| d.push_invalid_at.is_none())
        .collect();
    if devices.is_empty() {
        return Verdict::Dropped("no_device");
    }
    match ctx.store.is_muted(a.channel, a.user).await {
        Ok(true) => return Verdict::Dropped("muted"),
        Ok(false) => {}
        Err(e) => return store_retry(e),
    }
    let preview = if ctx.include_preview {
        preview(ctx, &a.newest).await
    } else {
        None
    };
    let n = Notification {
        user: a.user,
        channel: a.channel,
        seq: a.newest.key.seq.0,
        count: a.count,
        sender: a.newest.sender.0,
        timestamp_ms: a.newest.timestamp_ms,
        collapse_id: format!("confab-{}", a.channel),
        preview,
    };
    let mut done = Vec::new();
    let mut sent = false;
    let mut retry: Option<Option<Duration>> = None;
    for device in devices.iter().filter(|d| !a.skip.contains(&d.id)) {
        let Some(provider) = ctx.providers.get(&device.platform) else {
            ctx.metrics
                .dropped(device.platform.as_str(), "no_provider", 1);
            done.push(device.id);
            continue;
        };
        let name = provider.name();
        let outcome = {
            let Ok(_permit) = ctx.permits.acquire().await else {
                break;
            };
            provider.send(&device.push_token, &n).await
        };
        match outcome {
            Outcome::Sent => {
                ctx.metrics.sent(name);
                sent = true;
                done.push(device.id);
            }
            Outcome::Unregistered => {
                ctx.metrics.failed(name, "unregistered");
                done.push(device.id);
                match ctx
                    .store
                    .mark_push_token_dead(device.platform, &device.push_token)
                    .await
                {
                    Ok(_) => info!(
                        user = a.user,
                        device = device.id,
                        provider = name,
                        "push token is dead; device marked"
                    ),
                    Err(e) => warn!(error = %e, "could not mark a dead push token"),
                }
            }
            Outcome::Rejected { reason, detail } => {
                ctx.metrics.failed(name, reason);
                warn!(user = a.user, device = device.id, provider = name, reason, %detail, "push rejected");
                done.push(device.id);
            }
            Outcome::Retry { after, reason } => {
                ctx.metrics.retried(name, reason);
                debug!(
                    user = a.user,
                    device = device.id,
                    provider = name,
                    reason,
                    "push failed transiently"
                );
                let floor = match (retry.flatten(), after) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                retry = Some(floor);
            }
        }
    }
    Verdict::Tried { done, sent, retry }
}

/// The newest message's sender name and the start of its text.
async fn preview(ctx: &Ctx, newest: &OutboxEntry) -> Option<Preview> {
    let log = ctx.log.clone();
    let (channel, seq) = (newest.key.channel, newest.key.seq);
    let page = tokio::task::spawn_blocking(move || {
        log.channel_history(ChannelId(channel.0), HistoryAnchor::After(seq.prev()), 1)
    })
    .await
    .ok()?
    .ok()?;
    let message = page.items.into_iter().next()?;
    let body: String = message.text.chars().take(PREVIEW_CHARS).collect();
    let title = match ctx.store.user(newest.sender.0).await {
        Ok(Some(u)) => u.display_name,
        _ => String::new(),
    };
    Some(Preview { title, body })
}
