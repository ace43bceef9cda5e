//! `[push]` in the node's config: the worker's pacing and each provider's
//! credentials. A provider whose section is absent is off, and devices of
//! its platform get no notification (counted as dropped, reason
//! `no_provider`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use confab_types::InvalidConfig;

/// The push service's settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Run the push service at all. Off (or with no provider configured),
    /// no job is written and nothing is sent.
    pub enabled: bool,
    /// How long the first job of a channel waits for more before its
    /// notification goes out: a burst becomes one notification.
    pub collapse_ms: u64,
    /// Jobs older than this are dropped undelivered (reason `expired`): a
    /// day-old "new message" wakes nobody usefully.
    pub max_age_secs: u64,
    /// Sends in flight at once, over all providers.
    pub concurrency: usize,
    /// Give up on one request after this long (counted as a retryable
    /// `timeout`).
    pub request_timeout_ms: u64,
    /// First retry delay; doubles per attempt, with full jitter.
    pub retry_base_ms: u64,
    /// Cap on one retry delay (Retry-After from the provider may exceed it).
    pub retry_max_ms: u64,
    /// Put the sender's name and the start of the text in the
    /// notification. Off by default: the text then never leaves the node.
    pub include_preview: bool,
    /// Extra root certificates (PEM) trusted for provider endpoints, beside
    /// the public web roots: a relay on a private PKI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Firebase Cloud Messaging (HTTP v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmConfig>,
    /// Apple Push Notification service (HTTP/2, token auth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsConfig>,
    /// Signed JSON POSTs to a self-hosted relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            collapse_ms: 1000,
            max_age_secs: 24 * 3600,
            concurrency: 64,
            request_timeout_ms: 10_000,
            retry_base_ms: 500,
            retry_max_ms: 5 * 60 * 1000,
            include_preview: false,
            ca_file: None,
            fcm: None,
            apns: None,
            webhook: None,
        }
    }
}

/// FCM HTTP v1 with a service account (OAuth2 JWT-bearer flow, RS256).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service-account JSON downloaded from the Firebase console
    /// (`project_id`, `private_key_id`, `private_key`, `client_email`,
    /// `token_uri` are read from it).
    pub service_account_file: PathBuf,
    /// Base URL of the FCM API.
    #[serde(default = "fcm_endpoint")]
    pub endpoint: String,
}

fn fcm_endpoint() -> String {
    "https://fcm.googleapis.com".into()
}

/// APNs provider-token authentication.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` signing key (PKCS#8 PEM, P-256) from the Apple developer
    /// account.
    pub key_file: PathBuf,
    /// The key's 10-character id.
    pub key_id: String,
    /// The developer team id (the token's issuer).
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `https://api.push.apple.com`, or
    /// `https://api.sandbox.push.apple.com` for development builds.
    #[serde(default = "apns_endpoint")]
    pub endpoint: String,
}

fn apns_endpoint() -> String {
    "https://api.push.apple.com".into()
}

/// A self-hosted relay.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// HMAC-SHA256 key for `X-Confab-Signature`, at least 32 bytes.
    pub secret: String,
    /// Where every webhook notification is POSTed (the device's token goes
    /// in the body). Unset, each device's token is its own URL
    /// (UnifiedPush-style); only allow that where users are trusted not to
    /// point the node at internal addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn invalid(key: &'static str, message: impl Into<String>) -> InvalidConfig {
    InvalidConfig::new(key, message)
}

fn http_url(key: &'static str, url: &str) -> Result<(), InvalidConfig> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(invalid(key, format!("`{url}` is not an http(s) URL")))
    }
}

impl PushConfig {
    /// Range and consistency checks.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.collapse_ms > 60_000 {
            return Err(invalid("push.collapse_ms", "at most 60000"));
        }
        if self.max_age_secs == 0 {
            return Err(invalid("push.max_age_secs", "must be positive"));
        }
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(invalid("push.concurrency", "1 to 10000"));
        }
        if !(100..=120_000).contains(&self.request_timeout_ms) {
            return Err(invalid("push.request_timeout_ms", "100 to 120000"));
        }
        if self.retry_base_ms == 0 || self.retry_base_ms > self.retry_max_ms {
            return Err(invalid(
                "push.retry_base_ms",
                "must be positive and at most push.retry_max_ms",
            ));
        }
        if let Some(fcm) = &self.fcm {
            http_url("push.fcm.endpoint", &fcm.endpoint)?;
        }
        if let Some(apns) = &self.apns {
            http_url("push.apns.endpoint", &apns.endpoint)?;
            if apns.key_id.is_empty() || apns.team_id.is_empty() {
                return Err(invalid(
                    "push.apns.key_id",
                    "key_id and team_id are required",
                ));
            }
            if apns.topic.is_empty() {
                return Err(invalid(
                    "push.apns.topic",
                    "the app's bundle id is required",
                ));
            }
        }
        if let Some(webhook) = &self.webhook {
            if webhook.secret.len() < 32 {
                return Err(invalid("push.webhook.secret", "at least 32 bytes"));
            }
            if let Some(url) = &webhook.url {
                http_url("push.webhook.url", url)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ranges_are_checked() {
        let ok = PushConfig::default();
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.concurrency = 0;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.retry_base_ms = c.retry_max_ms + 1;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.webhook = Some(WebhookConfig {
            secret: "short".into(),
            url: None,
        });
        assert!(c.validate().is_err());
        let mut c = ok;
        c.apns = Some(ApnsConfig {
            key_file: "k.p8".into(),
            key_id: "ABC".into(),
            team_id: "T".into(),
            topic: "com.example".into(),
            endpoint: "api.push.apple.com".into(),
        });
        assert!(c.validate().is_err());
    }
}
