//! What every scripted-server test needs: a throwaway certificate and the
//! server's TLS config for it, the server-side frames a session starts
//! with, and waiting for the client's events with a deadline so that a
//! broken client fails a test instead of hanging it. The scripted servers
//! themselves are in `servers`.

pub(crate) mod servers;

use std::sync::Arc;
use std::time::Duration;

use confab_client::{ChannelId, ClientEvent, DeviceId, Events, InboxSeq, Message, Seq, UserId};
use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::frame::{Frame, Limits, SyncBatch, Welcome};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) struct Cert {
    pub(crate) der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    /// The certificate as a PEM file, as `confab serve` writes it.
    pub(crate) pem_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) fn cert_for(name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("cert.pem");
    std::fs::write(&pem_file, ck.cert.pem()).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
        pem_file,
        _dir: dir,
    }
}

pub(crate) fn server_tls(cert: &Cert, alpn: &[u8]) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
    .unwrap();
    if !alpn.is_empty() {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    config
}

pub(crate) fn welcome() -> Frame {
    Frame::Welcome(Welcome {
        version: 1,
        user_id: UserId(10),
        session_id: 77,
        heartbeat_interval_ms: 15_000,
        limits: Limits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES as u32,
            max_text_chars: 100_000,
            max_group_members: 100,
            max_page: 256,
            max_presence_users: 500,
            send_rate_per_s: 50,
        },
    })
}

pub(crate) fn replay(messages: Vec<confab_protocol::frame::Message>) -> Frame {
    Frame::SyncBatch(SyncBatch {
        request_id: 0,
        has_more: false,
        messages,
    })
}

pub(crate) fn msg(inbox_seq: u64, channel_id: u64, text: &str) -> confab_protocol::frame::Message {
    confab_protocol::frame::Message {
        inbox_seq: InboxSeq(inbox_seq),
        channel_id: ChannelId(channel_id),
        seq: Seq(inbox_seq),
        sender_id: UserId(42),
        sender_device: DeviceId(1),
        client_msg_id: inbox_seq,
        timestamp_ms: 1_700_000_000_000,
        text: text.into(),
    }
}

pub(crate) fn enc(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        binary::encode(f, &mut out);
    }
    out
}

async fn next_event(events: &mut Events) -> ClientEvent {
    match tokio::time::timeout(PATIENCE, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the client closed"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

/// The next event that is not a heartbeat round trip.
pub(crate) async fn event(events: &mut Events) -> ClientEvent {
    loop {
        match next_event(events).await {
            ClientEvent::Rtt(_) => {}
            e => return e,
        }
    }
}

pub(crate) async fn message(events: &mut Events) -> Message {
    match event(events).await {
        ClientEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}
