//! The directory event bus: how the rest of the node learns that the
//! relational store changed, so that the gateway's cores can keep channel
//! members, friend lists, devices and revoked sessions in memory and never
//! query the database per message.
//!
//! The [`Store`](crate::store::Store) publishes one [`DirectoryEvent`] after
//! each committed change, whoever made it (the HTTP API or the gateway
//! itself, e.g. when a first message creates a DM). Delivery is a
//! `tokio::sync::broadcast` channel: every subscriber sees every event, in
//! commit order per publisher, and publishing never blocks. A subscriber
//! that falls more than the bus's capacity behind gets
//! [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged)
//! and must then drop every cached entry (it cannot know which it missed).
//! Events carry the new state where it is small (a channel's member list is
//! at most 100 ids) so that a cache can be updated without a query.
//!
//! The events are plain serde values so that the same stream can later
//! travel between nodes on a cluster bus.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events kept for a slow subscriber before it lags.
pub const DEFAULT_CAPACITY: usize = 4096;

/// One committed change of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DirectoryEvent {
    /// The members of a channel changed (created, joined, left, removed);
    /// `members` is the complete new list, sorted ascending (empty when the
    /// last member left).
    MembershipChanged {
        /// The channel.
        channel_id: u64,
        /// Every member after the change.
        members: Vec<u64>,
    },
    /// The relation between two users changed; `friends` says whether they
    /// are friends now (a pending request is not a friendship).
    FriendshipChanged {
        /// One user (the smaller id).
        a: u64,
        /// The other user.
        b: u64,
        /// Whether the two are friends after the change.
        friends: bool,
    },
    /// A session was revoked (logout, refresh-token reuse): access tokens
    /// carrying this session id must be refused from now on.
    SessionRevoked {
        /// The session's owner.
        user_id: u64,
        /// The session id (the token's `jti`).
        session_id: u64,
    },
    /// A user's registered devices or push tokens changed; re-read them with
    /// [`Store::devices`](crate::store::Store::devices).
    DevicesChanged {
        /// The user.
        user_id: u64,
    },
}

/// The sending side of the bus; cheap to clone, shared by every publisher.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<DirectoryEvent>,
}

impl EventBus {
    /// A bus that keeps up to `capacity` events for a slow subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus { tx }
    }

    /// Publishes an event to every current subscriber. Having none is fine:
    /// events are notifications, the store remains the source of truth.
    pub fn publish(&self, event: DirectoryEvent) {
        tracing::debug!(?event, "directory event");
        let _ = self.tx.send(event);
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DirectoryEvent> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};

    #[test]
    fn every_subscriber_sees_events_in_order() {
        let bus = EventBus::new(8);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(DirectoryEvent::DevicesChanged { user_id: 1 });
        bus.publish(DirectoryEvent::SessionRevoked {
            user_id: 1,
            session_id: 9,
        });
        for rx in [&mut a, &mut b] {
            assert_eq!(
                rx.try_recv().unwrap(),
                DirectoryEvent::DevicesChanged { user_id: 1 }
            );
            assert_eq!(
                rx.try_recv().unwrap(),
                DirectoryEvent::SessionRevoked {
                    user_id: 1,
                    session_id: 9
                }
            );
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged() {
        let bus = EventBus::new(2);
        let mut rx = bus.subscribe();
        for user_id in 0..5 {
            bus.publish(DirectoryEvent::DevicesChanged { user_id });
        }
        assert!(matches!(rx.recv().await, Err(RecvError::Lagged(3))));
        assert_eq!(
            rx.recv().await.unwrap(),
            DirectoryEvent::DevicesChanged { user_id: 3 }
        );
    }

    #[test]
    fn events_serialise_with_a_type_tag() {
        let e = DirectoryEvent::MembershipChanged {
            channel_id: 4,
            members: vec![1, 2],
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"type":"membership_changed","channel_id":4,"members":[1,2]}"#
        );
        assert_eq!(serde_json::from_str::<DirectoryEvent>(&json).unwrap(), e);
    }
}
