//! Calls that wait for an answer (history pages, presence) and the
//! presence subscriptions, kept across reconnects.
//!
//! The session hands out request ids only on a live connection and an
//! answer never crosses connections, so a call made while disconnected
//! waits here, and a call whose connection died before the answer is asked
//! again on the next one (both are read-only, so asking twice is
//! harmless). Subscriptions last only as long as a connection on the
//! server; they are renewed after every `Welcome`.

use confab_types::{ChannelId, UserId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use confab_protocol::frame::{
    Error, FrameType, HistoryAnchor, HistoryBatch, Presence, PresenceInfo,
};
use confab_protocol::session::ClientSession;
use tokio::sync::oneshot;

use crate::error::ClientError;

/// Where a call's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A call waiting for its answer.
#[derive(Debug)]
pub(crate) enum Request {
    History {
        channel_id: ChannelId,
        anchor: HistoryAnchor,
        limit: u32,
        reply: Reply<HistoryBatch>,
    },
    Query {
        users: Vec<UserId>,
        reply: Reply<Vec<PresenceInfo>>,
    },
    /// `reply` is `None` for a renewal the client makes by itself; its
    /// answer becomes a `Presence` event.
    Subscribe {
        users: Vec<UserId>,
        reply: Option<Reply<Vec<PresenceInfo>>>,
    },
}

impl Request {
    /// Sends it on the session; `None` when the session is not ready.
    fn issue(&self, session: &mut ClientSession) -> Option<u64> {
        match self {
            Request::History {
                channel_id,
                anchor,
                limit,
                ..
            } => session.history(*channel_id, *anchor, *limit),
            Request::Query { users, .. } => session.presence_query(users.clone()),
            Request::Subscribe { users, .. } => session.presence_subscribe(users.clone()),
        }
    }

    fn frame_type(&self) -> FrameType {
        match self {
            Request::History { .. } => FrameType::History,
            Request::Query { .. } => FrameType::PresenceQuery,
            Request::Subscribe { .. } => FrameType::PresenceSubscribe,
        }
    }

    /// Answers the caller with an error.
    pub(crate) fn fail(self, error: ClientError) {
        match self {
            Request::History { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Query { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Subscribe { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}

/// The calls in progress and the subscriptions to renew.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Not yet sent on the current connection, oldest first.
    deferred: VecDeque<Request>,
    /// Sent, by request id.
    in_flight: BTreeMap<u64, Request>,
    /// Users whose presence changes the application wants.
    subscribed: BTreeSet<UserId>,
}

impl Requests {
    /// Sends a call now if the session is ready, otherwise after the next
    /// `Welcome`.
    pub fn submit(&mut self, request: Request, session: &mut ClientSession) {
        if let Request::Subscribe { users, .. } = &request {
            self.subscribed.extend(users.iter().copied());
        }
        match request.issue(session) {
            Some(id) => {
                self.in_flight.insert(id, request);
            }
            None => self.deferred.push_back(request),
        }
    }

    /// Forgets subscriptions; returns true when some were active (the
    /// caller then tells the server, if connected).
    pub fn unsubscribe(&mut self, users: &[UserId]) -> bool {
        let mut any = false;
        for u in users {
            any |= self.subscribed.remove(u);
        }
        // A deferred subscription for them must not come back either.
        for r in self.deferred.iter_mut() {
            if let Request::Subscribe { users: wanted, .. } = r {
                wanted.retain(|u| !users.contains(u));
            }
        }
        any
    }

    /// A session is established: renew the subscriptions and send every
    /// waiting call. `max_users` is the server's `max_presence_users`.
    pub fn on_ready(&mut self, session: &mut ClientSession, max_users: u32) {
        let asked: BTreeSet<UserId> = self
            .deferred
            .iter()
            .filter_map(|r| match r {
                Request::Subscribe { users, .. } => Some(users.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        let renew: Vec<UserId> = self.subscribed.difference(&asked).copied().collect();
        let chunk = (max_users as usize).max(1);
        for users in renew.chunks(chunk) {
            self.deferred.push_back(Request::Subscribe {
                users: users.to_vec(),
                reply: None,
            });
        }
        let waiting = std::mem::take(&mut self.deferred);
        for request in waiting {
            if let Request::Subscribe { users, reply: None } = &request {
                if users.is_empty() {
                    continue;
                }
            }
            self.submit(request, session);
        }
    }

    /// The connection is gone: whatever was sent is asked again on the
    /// next one (renewals are remade then, so they are dropped here).
    pub fn on_disconnect(&mut self) {
        let sent = std::mem::take(&mut self.in_flight);
        let mut requeue: VecDeque<Request> = sent
            .into_values()
            .filter(|r| !matches!(r, Request::Subscribe { reply: None, .. }))
            .collect();
        requeue.append(&mut self.deferred);
        self.deferred = requeue;
    }

    /// A history page arrived.
    pub fn on_history(&mut self, batch: HistoryBatch) {
        match self.in_flight.remove(&batch.request_id) {
            Some(Request::History { reply, .. }) => {
                let _ = reply.send(Ok(batch));
            }
            Some(other) => {
                tracing::warn!(
                    request_id = batch.request_id,
                    "history answer for another call"
                );
                other.fail(ClientError::Server {
                    code: confab_protocol::ErrorCode::UnexpectedFrame,
                    message: "answered with a history page".into(),
                });
            }
            None => tracing::debug!(request_id = batch.request_id, "unasked history page"),
        }
    }

    /// A presence answer arrived (request id not 0). Returns the entries
    /// when they are an event for the application: a renewal's answer, or
    /// a subscription whose caller stopped waiting.
    pub fn on_presence(&mut self, presence: Presence) -> Option<Vec<PresenceInfo>> {
        match self.in_flight.remove(&presence.request_id) {
            Some(Request::Query { reply, .. }) => {
                let _ = reply.send(Ok(presence.entries));
                None
            }
            Some(Request::Subscribe {
                reply: Some(reply), ..
            }) => reply.send(Ok(presence.entries)).err().and_then(Result::ok),
            Some(Request::Subscribe { reply: None, .. }) => Some(presence.entries),
            Some(other) => {
                self.in_flight.insert(presence.request_id, other);
                None
            }
            None => None,
        }
    }

    /// Matches an `Error` to the call it answers; false when it answers
    /// none of them.
    pub fn on_error(&mut self, e: &Error) -> bool {
        let matches = self
            .in_flight
            .get(&e.request_id)
            .is_some_and(|r| r.frame_type().as_u8() == e.frame_type);
        if !matches {
            return false;
        }
        let request = self.in_flight.remove(&e.request_id).expect("just found");
        if let Request::Subscribe { users, .. } = &request {
            // A refused subscription is not renewed.
            for u in users {
                self.subscribed.remove(u);
            }
        }
        request.fail(ClientError::Server {
            code: e.code,
            message: e.message.clone(),
        });
        true
    }

    /// Fails every waiting call (the client is closed, or refused).
    pub fn fail_all(&mut self, error: &ClientError) {
        for r in std::mem::take(&mut self.deferred) {
            r.fail(error.clone());
        }
        for r in std::mem::take(&mut self.in_flight).into_values() {
            r.fail(error.clone());
        }
    }

    /// Calls waiting or in flight (for tests and logs).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.deferred.len() + self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::frame::{Frame, Limits, Welcome};
    use confab_protocol::session::SessionConfig;
    use confab_protocol::ErrorCode;
    use confab_types::DeviceId;
    use std::time::Instant;

    fn ready_session() -> ClientSession {
        let mut s = ClientSession::new(SessionConfig::new("t", DeviceId(1)));
        let now = Instant::now();
        s.connected(now);
        s.handle(
            now,
            Frame::Welcome(Welcome {
                version: 1,
                user_id: UserId(5),
                session_id: 1,
                heartbeat_interval_ms: 15_000,
                limits: Limits {
                    max_frame_bytes: 1 << 20,
                    max_text_chars: 100_000,
                    max_group_members: 100,
                    max_page: 256,
                    max_presence_users: 2,
                    send_rate_per_s: 50,
                },
            }),
        );
        while s.poll_transmit().is_some() {}
        s
    }

    fn sent(s: &mut ClientSession) -> Vec<Frame> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    #[test]
    fn calls_wait_for_a_connection_and_are_asked_again_after_a_loss() {
        let mut s = ClientSession::new(SessionConfig::new("t", DeviceId(1)));
        let mut r = Requests::default();
        let (tx, mut rx) = oneshot::channel();
        r.submit(
            Request::History {
                channel_id: ChannelId(9),
                anchor: HistoryAnchor::Latest,
                limit: 10,
                reply: tx,
            },
            &mut s,
        );
        assert_eq!(r.len(), 1);
        // Not connected: nothing goes out.
        assert!(sent(&mut s).iter().all(|f| !matches!(f, Frame::History(_))));
        let mut s = ready_session();
        r.on_ready(&mut s, 500);
        assert!(matches!(sent(&mut s).as_slice(), [Frame::History(_)]));
        // The connection dies before the answer: on the next one it is
        // asked again, and that answer resolves it.
        r.on_disconnect();
        assert_eq!(r.len(), 1);
        let mut s = ready_session();
        r.on_ready(&mut s, 500);
        let again = match sent(&mut s).as_slice() {
            [Frame::History(h)] => h.request_id,
            other => panic!("{other:?}"),
        };
        r.on_history(HistoryBatch {
            request_id: again,
            channel_id: ChannelId(9),
            has_more: false,
            messages: vec![],
        });
        assert_eq!(rx.try_recv().unwrap().unwrap().channel_id, ChannelId(9));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn subscriptions_are_renewed_in_chunks_and_errors_reach_their_call() {
        let mut s = ready_session();
        let mut r = Requests::default();
        let (tx, mut rx) = oneshot::channel();
        r.submit(
            Request::Subscribe {
                users: vec![UserId(1), UserId(2), UserId(3)],
                reply: Some(tx),
            },
            &mut s,
        );
        let id = match sent(&mut s).as_slice() {
            [Frame::PresenceSubscribe(p)] => p.request_id,
            other => panic!("{other:?}"),
        };
        let entries = vec![PresenceInfo {
            user_id: UserId(1),
            online: true,
            last_seen_ms: 0,
        }];
        assert_eq!(
            r.on_presence(Presence {
                request_id: id,
                entries: entries.clone(),
            }),
            None
        );
        assert_eq!(rx.try_recv().unwrap().unwrap(), entries);
        r.unsubscribe(&[UserId(2)]);
        // Reconnect: users 1 and 3 are renewed, at most 2 per frame.
        r.on_disconnect();
        let mut s = ready_session();
        r.on_ready(&mut s, 2);
        let renewals: Vec<Vec<u64>> = sent(&mut s)
            .into_iter()
            .map(|f| match f {
                Frame::PresenceSubscribe(p) => p.user_ids.iter().map(|u| u.0).collect(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(renewals, vec![vec![1, 3]]);
        // A query refused by the server fails its call with the code.
        let (tx, mut rx) = oneshot::channel();
        r.submit(
            Request::Query {
                users: vec![UserId(4)],
                reply: tx,
            },
            &mut s,
        );
        let id = match sent(&mut s).as_slice() {
            [Frame::PresenceQuery(q)] => q.request_id,
            other => panic!("{other:?}"),
        };
        assert!(!r.on_error(&Error {
            code: ErrorCode::InvalidArgument,
            message: String::new(),
            frame_type: FrameType::History.as_u8(),
            request_id: id,
        }));
        assert!(r.on_error(&Error {
            code: ErrorCode::InvalidArgument,
            message: "too many".into(),
            frame_type: FrameType::PresenceQuery.as_u8(),
            request_id: id,
        }));
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(ClientError::Server {
                code: ErrorCode::InvalidArgument,
                ..
            })
        ));
    }
}
