//! From a storage completion to the devices: the producing shard turns a
//! completion into one [`Delivery`] and sends each shard only the inbox
//! entries of the users it owns; each owning shard releases the entries in
//! inbox order to every device of the recipient (the sending device gets
//! its `SendAck` instead). Typing notices and read receipts take the same
//! routes but are never stored.

use std::sync::Arc;
use std::time::Instant;

use confab_protocol::frame::{self, Frame};
use confab_protocol::ErrorCode;
use confab_storage::writer::Completion;
use confab_storage::InboxEntry;
use confab_types::{InboxSeq, StoredMessage, UserId};
use smallvec::SmallVec;

use super::conns::{ConnId, Mode};
use super::encoded::encoded;
use super::msg::{Output, PushEvent, ReadReceipt, ShardMsg, TypingNotice};
use super::pending::PendingSend;
use super::presence::Encoded;
use super::state::ShardState;
use super::timers::Timer;
use super::users::UserSlot;
use crate::fanout::{Delivery, Origin, OutFrame, Priority};
use crate::ports::{ClusterEvent, Found, PushJob};

/// Most entries one gap read asks for.
const GAP_READ_LIMIT: u64 = 1000;

impl ShardState {
    /// Keeps a send that was handed to storage; its completion comes back
    /// with the returned token.
    pub fn pending_send(&mut self, send: PendingSend) -> u64 {
        self.pending.insert(send)
    }

    /// Forgets a send storage refused to take.
    pub fn cancel_send(&mut self, token: u64) -> Option<PendingSend> {
        self.pending.remove(token)
    }

    /// Sends in storage.
    pub fn pending_sends(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn stored(&mut self, now: Instant, c: Completion) {
        let Some(p) = self.pending.remove(c.token) else {
            return;
        };
        self.metrics
            .store_latency
            .observe(now.saturating_duration_since(p.submitted).as_secs_f64());
        let outcome = match c.result {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "storage refused a send");
                let answering = Frame::Send(frame::Send {
                    client_msg_id: p.client_msg_id,
                    target: frame::Target::Channel(p.channel),
                    text: Default::default(),
                });
                // A replicated log that did not take the send in time: the
                // client retries it with the same id.
                let (code, message) = match e {
                    confab_storage::StorageError::Unavailable(_) => {
                        (ErrorCode::Unavailable, "message log unavailable; retry")
                    }
                    _ => (ErrorCode::Internal, "storage error"),
                };
                self.send_error(p.conn, code, message, Some(&answering));
                return;
            }
        };
        if outcome.duplicate {
            self.send(
                p.conn,
                &Frame::SendAck(frame::SendAck {
                    client_msg_id: p.client_msg_id,
                    channel_id: outcome.channel,
                    seq: outcome.seq,
                    inbox_seq: outcome.sender_inbox_seq,
                    timestamp_ms: outcome.timestamp_ms,
                    duplicate: true,
                }),
            );
            return;
        }
        self.metrics.messages_stored.inc();
        self.metrics.fanout.observe(outcome.inbox.len() as f64);
        let PendingSend {
            channel,
            sender,
            device,
            client_msg_id,
            text,
            push_to,
            ..
        } = p;
        let delivery = Arc::new(Delivery::new(
            StoredMessage {
                channel,
                seq: outcome.seq,
                sender,
                device,
                client_msg_id,
                timestamp_ms: outcome.timestamp_ms,
                text,
            },
            Origin::Stored { push_to },
            now,
        ));
        self.route(now, &delivery, &outcome.inbox);
    }

    /// Sends every shard the entries of its own users.
    fn route(&mut self, now: Instant, delivery: &Arc<Delivery>, inbox: &[(UserId, InboxSeq)]) {
        for (core, entries) in super::entries_by_core(inbox, self.config.cores) {
            if core == self.config.core {
                self.deliver_local(now, delivery, &entries);
            } else {
                self.outputs.push_back(Output::ToCore(
                    core,
                    ShardMsg::Deliver {
                        delivery: delivery.clone(),
                        entries,
                    },
                ));
            }
        }
    }

    pub(crate) fn deliver_local(
        &mut self,
        now: Instant,
        d: &Arc<Delivery>,
        entries: &[(UserId, InboxSeq)],
    ) {
        for &(user, seq) in entries {
            if let Some(durable) = d.push_job(user) {
                // No device connected here (a user in the offline grace
                // period has none either) nor on another node, which
                // delivers its own copy: the push service may wake them.
                let connected = self.users.get(&user).is_some_and(|s| !s.conns.is_empty())
                    || self
                        .cluster
                        .as_ref()
                        .is_some_and(|c| c.online_elsewhere(user));
                let found = if !connected {
                    self.metrics.push_jobs.inc();
                    Some(Found::Offline { durable })
                } else {
                    durable.then_some(Found::OnlineAfterAll)
                };
                if let Some(found) = found {
                    let m = d.message();
                    let job = PushJob {
                        user,
                        channel: m.channel,
                        seq: m.seq,
                        inbox_seq: seq,
                        sender: m.sender,
                        timestamp_ms: m.timestamp_ms,
                    };
                    self.outputs
                        .push_back(Output::Push(PushEvent::Delivered(job, found)));
                }
            }
            self.offer(now, user, seq, d.clone());
        }
    }

    /// Offers one entry to a user's stream, releasing what is in line.
    fn offer(&mut self, now: Instant, user: UserId, seq: InboxSeq, d: Arc<Delivery>) {
        let Some(mut slot) = self.users.remove(&user) else {
            return;
        };
        let was_stalled = slot.order.stalled_since().is_some();
        let mut released: SmallVec<[(InboxSeq, Arc<Delivery>); 1]> = SmallVec::new();
        slot.order
            .offer(seq, d, now, |s, item| released.push((s, item)));
        self.after_offer(now, user, &mut slot, was_stalled);
        for (s, item) in &released {
            self.release(now, user, &slot.conns, *s, item);
        }
        self.users.insert(user, slot);
    }

    /// Arms the gap timer when a stream starts waiting on a missing entry.
    pub(crate) fn after_offer(
        &mut self,
        _now: Instant,
        user: UserId,
        slot: &mut UserSlot,
        was_stalled: bool,
    ) {
        if let (false, Some(since)) = (was_stalled, slot.order.stalled_since()) {
            self.timers
                .at(since + self.config.gap_timeout, Timer::Gap(user));
        }
    }

    /// Queues one released entry to every device of `user`.
    pub(crate) fn release(
        &mut self,
        now: Instant,
        user: UserId,
        conns: &[ConnId],
        seq: InboxSeq,
        d: &Arc<Delivery>,
    ) {
        let m = d.message();
        for &id in conns {
            let Some(c) = self.conns.get(id) else {
                continue;
            };
            let frame = if user == m.sender && c.device == m.device {
                let ack = Frame::SendAck(frame::SendAck {
                    client_msg_id: m.client_msg_id,
                    channel_id: m.channel,
                    seq: m.seq,
                    inbox_seq: seq,
                    timestamp_ms: m.timestamp_ms,
                    duplicate: false,
                });
                OutFrame::Encoded(ack.frame_type(), encoded(c.encoding, &ack))
            } else {
                d.frame(c.encoding, seq)
            };
            self.metrics.deliveries.inc();
            self.metrics
                .delivery_latency
                .observe(now.saturating_duration_since(d.committed).as_secs_f64());
            let c = self.conns.get_mut(id).expect("looked up above");
            match &mut c.mode {
                Mode::Replaying(buffer) => buffer.push((frame, Priority::Required)),
                Mode::Waiting => {}
                Mode::Live => {
                    if self.push_frame(id, frame, Priority::Required) {
                        if let Some(c) = self.conns.get_mut(id) {
                            c.delivered = seq;
                        }
                    }
                }
            }
        }
    }

    /// A stream has waited long enough: read the missing entries back.
    pub(crate) fn check_gap(&mut self, now: Instant, user: UserId) {
        let timeout = self.config.gap_timeout;
        let Some(slot) = self.users.get_mut(&user) else {
            return;
        };
        let Some(since) = slot.order.stalled_since() else {
            return;
        };
        match slot.order.gap(now, timeout) {
            Some((after, first)) if !slot.refilling => {
                slot.refilling = true;
                let limit = after
                    .distance_to(first)
                    .saturating_sub(1)
                    .clamp(1, GAP_READ_LIMIT);
                self.outputs.push_back(Output::ReadGap {
                    user,
                    after,
                    limit: limit as usize,
                });
                self.timers.at(now + timeout, Timer::Gap(user));
            }
            _ => self.timers.at(since.max(now) + timeout, Timer::Gap(user)),
        }
    }

    /// Entries read back to fill a gap.
    pub(crate) fn gap_read(
        &mut self,
        now: Instant,
        user: UserId,
        entries: Option<Vec<InboxEntry>>,
    ) {
        if let Some(slot) = self.users.get_mut(&user) {
            slot.refilling = false;
        }
        for e in entries.unwrap_or_default() {
            let d = Arc::new(Delivery::new(e.message, Origin::Refill, now));
            self.offer(now, user, e.inbox_seq, d);
        }
    }

    /// Relays a typing notice to every shard holding a member.
    pub fn route_typing(&mut self, now: Instant, notice: Arc<TypingNotice>) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(ClusterEvent::Typing(notice.clone()));
        }
        for core in super::owner_cores(&notice.members, self.config.cores) {
            self.send_to_core(now, core, ShardMsg::Typing(notice.clone()));
        }
    }

    /// Relays a read receipt to every shard holding a member.
    pub fn route_receipt(&mut self, now: Instant, receipt: Arc<ReadReceipt>) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(ClusterEvent::Receipt(receipt.clone()));
        }
        for core in super::owner_cores(&receipt.members, self.config.cores) {
            self.send_to_core(now, core, ShardMsg::Receipt(receipt.clone()));
        }
    }

    pub(crate) fn typing_local(&mut self, t: &TypingNotice) {
        let frame = Frame::TypingEvent(frame::TypingEvent {
            channel_id: t.channel,
            user_id: t.user,
        });
        let members = t.members.iter().filter(|u| **u != t.user);
        self.notify_members(members, &frame, Priority::Droppable);
    }

    pub(crate) fn receipt_local(&mut self, r: &ReadReceipt) {
        let frame = Frame::Receipt(frame::Receipt {
            channel_id: r.channel,
            user_id: r.user,
            seq: r.seq,
        });
        self.notify_members(r.members.iter(), &frame, Priority::Required);
    }

    /// Queues `frame` to the live connections of the members owned here.
    fn notify_members<'a>(
        &mut self,
        members: impl Iterator<Item = &'a UserId>,
        frame: &Frame,
        priority: Priority,
    ) {
        let me = self.config.core;
        let mut shared = Encoded::default();
        let mut targets: SmallVec<[ConnId; 8]> = SmallVec::new();
        for u in members {
            if self.owner(*u) != me {
                continue;
            }
            if let Some(slot) = self.users.get(u) {
                targets.extend(slot.conns.iter().copied());
            }
        }
        for id in targets {
            let Some(c) = self.conns.get(id) else {
                continue;
            };
            if !matches!(c.mode, Mode::Live) {
                continue;
            }
            let bytes = shared.get(c.encoding, frame);
            self.push_frame(id, OutFrame::Encoded(frame.frame_type(), bytes), priority);
        }
    }
}

/// Delivers a typing notice or read receipt made on another node of a
/// cluster to the cores holding its members here.
pub fn deliver_event(bus: &super::Bus, event: ClusterEvent) {
    let cores = bus.cores();
    let (members, msg): (&[UserId], &dyn Fn() -> ShardMsg) = match &event {
        ClusterEvent::Typing(t) => (&t.members, &|| ShardMsg::Typing(t.clone())),
        ClusterEvent::Receipt(r) => (&r.members, &|| ShardMsg::Receipt(r.clone())),
        ClusterEvent::Presence(info) => {
            // Each core holds the connections that watch it.
            for core in 0..cores {
                bus.send_shard(core, ShardMsg::PresenceChanged(*info));
            }
            return;
        }
    };
    for core in super::owner_cores(members, cores) {
        bus.send_shard(core, msg());
    }
}

/// Delivers a message stored elsewhere (by another node of a cluster, and
/// applied here from the replicated log) to the devices of its recipients
/// connected to this node: each core gets the entries of its own users,
/// released in inbox order like a message sent here. It was pushed (or
/// not) by the node that took it.
pub fn deliver_stored(bus: &super::Bus, message: StoredMessage, inbox: &[(UserId, InboxSeq)]) {
    let cores = bus.cores();
    let delivery = Arc::new(Delivery::new(message, Origin::Refill, Instant::now()));
    for (core, entries) in super::entries_by_core(inbox, cores) {
        bus.send_shard(
            core,
            ShardMsg::Deliver {
                delivery: delivery.clone(),
                entries,
            },
        );
    }
}
