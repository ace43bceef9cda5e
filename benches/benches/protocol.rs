//! Encode and decode cost of the frames that dominate traffic: a short chat
//! message (100 bytes) and the longest allowed one (100,000 characters), in
//! both encodings, plus the fan-out path that encodes once per message.

use std::hint::black_box;

use bytes::Bytes;
use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::fanout::SharedMessage;
use confab_protocol::frame::{Message, Send, Target};
use confab_protocol::Encoding;
use confab_protocol::{json, Frame};
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, UserId};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn texts() -> [(&'static str, String); 2] {
    [
        ("100B", "x".repeat(100)),
        // Mixed-width text: 100,000 characters, ~250,000 bytes.
        (
            "100k_chars",
            "héllo wörld 😀 ".repeat(100_000 / 15 + 1)[..]
                .chars()
                .take(100_000)
                .collect(),
        ),
    ]
}

fn message(text: &str) -> Frame {
    Frame::Message(Message {
        inbox_seq: InboxSeq(123_456),
        channel_id: ChannelId(987_654),
        seq: Seq(42_000),
        sender_id: UserId(1_000_001),
        sender_device: DeviceId(3),
        client_msg_id: 77,
        timestamp_ms: 1_764_000_000_000,
        text: text.to_owned().into(),
    })
}

fn send(text: &str) -> Frame {
    Frame::Send(Send {
        client_msg_id: 77,
        target: Target::Channel(ChannelId(987_654)),
        text: text.to_owned().into(),
    })
}

fn bench_binary(c: &mut Criterion) {
    let mut g = c.benchmark_group("binary");
    for (name, text) in texts() {
        let frame = message(&text);
        let bytes = binary::encode_to_vec(&frame);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut out = Vec::with_capacity(bytes.len() + 16);
        g.bench_with_input(BenchmarkId::new("encode_message", name), &frame, |b, f| {
            b.iter(|| {
                out.clear();
                binary::encode(black_box(f), &mut out);
                black_box(out.len())
            })
        });
        g.bench_with_input(
            BenchmarkId::new("decode_message", name),
            &bytes,
            |b, bytes| {
                b.iter(|| binary::decode(black_box(bytes), DEFAULT_MAX_FRAME_BYTES).unwrap())
            },
        );
        let send_bytes = binary::encode_to_vec(&send(&text));
        g.bench_with_input(
            BenchmarkId::new("decode_send", name),
            &send_bytes,
            |b, bytes| {
                b.iter(|| binary::decode(black_box(bytes), DEFAULT_MAX_FRAME_BYTES).unwrap())
            },
        );
        // What the gateway does: the frame arrives in a buffer it owns, and
        // the decoded text is a slice of it, not a copy.
        let shared = Bytes::from(send_bytes);
        g.bench_with_input(
            BenchmarkId::new("decode_send_in_place", name),
            &shared,
            |b, bytes| {
                b.iter(|| {
                    binary::decode_bytes(black_box(bytes).clone(), DEFAULT_MAX_FRAME_BYTES).unwrap()
                })
            },
        );
    }
    g.finish();
}

fn bench_json(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    for (name, text) in texts() {
        let frame = message(&text);
        let bytes = json::encode(&frame).into_bytes();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut out = Vec::with_capacity(bytes.len() + 16);
        g.bench_with_input(BenchmarkId::new("encode_message", name), &frame, |b, f| {
            b.iter(|| {
                out.clear();
                json::encode_into(black_box(f), &mut out);
                black_box(out.len())
            })
        });
        g.bench_with_input(
            BenchmarkId::new("decode_message", name),
            &bytes,
            |b, bytes| {
                b.iter(|| json::decode(black_box(bytes), 4 * DEFAULT_MAX_FRAME_BYTES).unwrap())
            },
        );
    }
    g.finish();
}

/// A 100-member group message: one shared encoding, then one small header
/// per recipient (what the gateway does), against encoding 100 frames.
fn bench_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_100");
    for (name, text) in texts() {
        let Frame::Message(m) = message(&text) else {
            unreachable!()
        };
        g.throughput(Throughput::Elements(100));
        g.bench_function(BenchmarkId::new("shared", name), |b| {
            b.iter(|| {
                let m = black_box(&m);
                let shared = SharedMessage::new(m.to_stored());
                let mut total = 0;
                for inbox_seq in 0..100u64 {
                    let h = shared.header(Encoding::Binary, InboxSeq(m.inbox_seq.0 + inbox_seq));
                    let body = shared.body(Encoding::Binary).clone();
                    total += h.as_bytes().len() + body.len();
                }
                black_box(total)
            })
        });
        g.bench_function(BenchmarkId::new("per_recipient", name), |b| {
            b.iter(|| {
                let mut total = 0;
                for inbox_seq in 0..100u64 {
                    let mut f = m.clone();
                    f.inbox_seq = InboxSeq(f.inbox_seq.0 + inbox_seq);
                    total += binary::encode_to_vec(&Frame::Message(f)).len();
                }
                black_box(total)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_binary, bench_json, bench_fanout);
criterion_main!(benches);
