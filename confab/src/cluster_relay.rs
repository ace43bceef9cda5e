//! Typing notices, read receipts and presence between the nodes of a
//! cluster (docs/cluster.md, "Presence, typing, receipts"). The cores hand
//! what they make to [`RelayPort`] without blocking; one task publishes it
//! to `confab.events`, one batch per wake-up, and delivers the other
//! nodes' batches to the cores here. A user's presence as this node's
//! watchers see it is the union over nodes: a node whose last device of a
//! user left says so, and the watchers here hear "offline" only when no
//! node (this one included) still has one. A node that dies takes its
//! users' presence with it once its membership entry is dead.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use confab_cluster::events::{Batch, Event, EVENTS_SUBJECT};
use confab_cluster::{Membership, NodeInfo};
use confab_gateway::ports::{ClusterEvent, ClusterPort};
use confab_gateway::shard::{deliver_event, Bus, ReadReceipt, TypingNotice};
use confab_protocol::frame::PresenceInfo;
use confab_types::UserId;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::warn;

use crate::service::{stopped, Service, ServiceFuture, ShutdownWatch};

/// Users online on other nodes: on how many.
type Elsewhere = Arc<RwLock<HashMap<UserId, u32>>>;

/// What the cores hold.
pub struct RelayPort {
    tx: mpsc::UnboundedSender<ClusterEvent>,
    elsewhere: Elsewhere,
}

impl ClusterPort for RelayPort {
    fn publish(&self, event: ClusterEvent) {
        // Gone only once the node stops.
        let _ = self.tx.send(event);
    }

    fn online_elsewhere(&self, user: UserId) -> bool {
        self.elsewhere
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&user)
    }
}

/// The relay's task, started once the node has joined.
pub struct Relay {
    rx: mpsc::UnboundedReceiver<ClusterEvent>,
    elsewhere: Elsewhere,
    membership: Option<(Membership, NodeInfo)>,
    bus: Bus,
    ttl: Duration,
}

/// The port for the gateway and the task that serves it.
pub fn relay(bus: Bus, ttl: Duration) -> (Arc<RelayPort>, Relay) {
    let (tx, rx) = mpsc::unbounded_channel();
    let elsewhere: Elsewhere = Arc::default();
    (
        Arc::new(RelayPort {
            tx,
            elsewhere: elsewhere.clone(),
        }),
        Relay {
            rx,
            elsewhere,
            membership: None,
            bus,
            ttl,
        },
    )
}

impl Relay {
    /// The relay of the node `me` in `membership`.
    pub fn joined(mut self, membership: Membership, me: NodeInfo) -> Relay {
        self.membership = Some((membership, me));
        self
    }
}

/// What the relay knows of presence.
#[derive(Default)]
struct Presence {
    /// Users with a device on this node.
    here: HashSet<UserId>,
    /// Users with a device on other nodes, by node.
    there: HashMap<UserId, HashSet<String>>,
    /// When each other node was last seen alive (membership or a batch).
    alive: HashMap<String, Instant>,
}

impl Presence {
    fn online(&self, user: UserId) -> bool {
        self.here.contains(&user) || self.there.contains_key(&user)
    }

    /// Records that `origin` has (or no longer has) a device of `user`;
    /// the change watchers here must see, if any.
    fn set(&mut self, origin: &str, user: UserId, online: bool, elsewhere: &Elsewhere) -> bool {
        let before = self.online(user);
        let count = {
            let nodes = self.there.entry(user).or_default();
            if online {
                nodes.insert(origin.to_owned());
            } else {
                nodes.remove(origin);
            }
            nodes.len() as u32
        };
        let mut map = elsewhere.write().unwrap_or_else(|e| e.into_inner());
        if count == 0 {
            self.there.remove(&user);
            map.remove(&user);
        } else {
            map.insert(user, count);
        }
        before != self.online(user)
    }
}

impl Service for Relay {
    fn name(&self) -> &'static str {
        "cluster relay"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            let Relay {
                mut rx,
                elsewhere,
                membership,
                bus,
                ttl,
            } = *self;
            let Some((membership, me)) = membership else {
                return Ok(());
            };
            let origin = me.origin();
            let client = membership.client();
            let mut incoming = client
                .subscribe(EVENTS_SUBJECT)
                .await
                .map_err(|e| anyhow::anyhow!("subscribing to {EVENTS_SUBJECT}: {e}"))?;
            let mut presence = Presence::default();
            let mut announce = false;
            // Every other node's life seen in the membership so far.
            let mut known: HashSet<String> = HashSet::new();
            let mut out = Vec::new();
            let mut tick = tokio::time::interval(membership.heartbeat());
            let stop = stopped(shutdown);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    n = rx.recv_many(&mut out, 1024) => {
                        if n == 0 {
                            break;
                        }
                        let events: Vec<Event> =
                            out.drain(..).map(|e| outgoing(e, &mut presence)).collect();
                        // Alone, there is nobody to tell (a node that joins
                        // later asks nothing of the past: presence is
                        // re-announced as devices connect).
                        if membership.live_count() > 1 {
                            let batch = Batch { origin: origin.clone(), events }.encode();
                            if let Err(e) = client.publish(EVENTS_SUBJECT, batch).await {
                                warn!(error = %e, "publishing cluster events");
                            }
                        }
                    }
                    Some(message) = incoming.next() => {
                        let batch = match Batch::decode(message.payload) {
                            Ok(b) => b,
                            Err(e) => {
                                warn!(error = %e, "a cluster event batch");
                                continue;
                            }
                        };
                        if batch.origin == origin {
                            continue;
                        }
                        presence.alive.insert(batch.origin.clone(), Instant::now());
                        for event in batch.events {
                            incoming_event(event, &batch.origin, &mut presence, &elsewhere, &bus);
                        }
                    }
                    _ = tick.tick() => {
                        let now = Instant::now();
                        // A node that joined since the last tick heard
                        // nothing of the users already online here: they
                        // are announced again, a tick later, once it
                        // surely listens.
                        if announce && !presence.here.is_empty() {
                            let events = presence
                                .here
                                .iter()
                                .map(|&user| Event::Presence { user, online: true, last_seen_ms: 0 })
                                .collect();
                            let batch = Batch { origin: origin.clone(), events }.encode();
                            if let Err(e) = client.publish(EVENTS_SUBJECT, batch).await {
                                warn!(error = %e, "announcing presence to a new node");
                            }
                        }
                        announce = false;
                        for node in membership.live() {
                            let o = node.origin();
                            if o != origin && known.insert(o.clone()) {
                                announce = true;
                            }
                            presence.alive.insert(o, now);
                        }
                        let dead: Vec<String> = presence
                            .alive
                            .iter()
                            .filter(|(_, seen)| now.duration_since(**seen) > ttl)
                            .map(|(o, _)| o.clone())
                            .collect();
                        for o in dead {
                            presence.alive.remove(&o);
                            known.remove(&o);
                            forget_node(&o, &mut presence, &elsewhere, &bus);
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// A core's event as it goes out; this node's own presence is noted.
fn outgoing(event: ClusterEvent, presence: &mut Presence) -> Event {
    match event {
        ClusterEvent::Typing(t) => Event::Typing {
            channel: t.channel,
            user: t.user,
            members: t.members.to_vec(),
        },
        ClusterEvent::Receipt(r) => Event::Receipt {
            channel: r.channel,
            user: r.user,
            seq: r.seq,
            members: r.members.to_vec(),
        },
        ClusterEvent::Presence(info) => {
            if info.online {
                presence.here.insert(info.user_id);
            } else {
                presence.here.remove(&info.user_id);
            }
            Event::Presence {
                user: info.user_id,
                online: info.online,
                last_seen_ms: info.last_seen_ms,
            }
        }
    }
}

fn incoming_event(
    event: Event,
    origin: &str,
    presence: &mut Presence,
    elsewhere: &Elsewhere,
    bus: &Bus,
) {
    match event {
        Event::Typing {
            channel,
            user,
            members,
        } => deliver_event(
            bus,
            ClusterEvent::Typing(Arc::new(TypingNotice {
                channel,
                user,
                members: members.into(),
            })),
        ),
        Event::Receipt {
            channel,
            user,
            seq,
            members,
        } => deliver_event(
            bus,
            ClusterEvent::Receipt(Arc::new(ReadReceipt {
                channel,
                user,
                seq,
                members: members.into(),
            })),
        ),
        Event::Presence {
            user,
            online,
            last_seen_ms,
        } => {
            if presence.set(origin, user, online, elsewhere) {
                deliver_event(
                    bus,
                    ClusterEvent::Presence(PresenceInfo {
                        user_id: user,
                        online,
                        last_seen_ms,
                    }),
                );
            }
        }
    }
}

/// A node that died: its users' devices there are gone.
fn forget_node(origin: &str, presence: &mut Presence, elsewhere: &Elsewhere, bus: &Bus) {
    let users: Vec<UserId> = presence
        .there
        .iter()
        .filter(|(_, nodes)| nodes.contains(origin))
        .map(|(u, _)| *u)
        .collect();
    let now = confab_types::now_ms();
    for user in users {
        if presence.set(origin, user, false, elsewhere) {
            deliver_event(
                bus,
                ClusterEvent::Presence(PresenceInfo {
                    user_id: user,
                    online: false,
                    last_seen_ms: now,
                }),
            );
        }
    }
}
