//! How pending jobs are gathered into per-(member, channel) groups and how
//! whole groups are settled without a notification, kept apart from the
//! scheduling of attempts so the bookkeeping of what is pending reads on
//! its own.

use std::collections::{BTreeMap, HashSet};

use tokio::time::Instant;

use super::{Group, GroupKey, Worker};
use crate::service::Event;
use confab_storage::OutboxEntry;

impl Worker {
    pub(super) fn add(&mut self, entry: OutboxEntry, due: Instant) {
        let key = (entry.key.user.0, entry.key.channel.0);
        match self.groups.get_mut(&key) {
            Some(group) => {
                if group.entries.insert(entry.key.seq, entry).is_none() {
                    self.pending_jobs += 1;
                    // New content: every device hears the new count, even
                    // one that got the previous one.
                    group.done.clear();
                }
            }
            None => {
                let mut entries = BTreeMap::new();
                entries.insert(entry.key.seq, entry);
                self.pending_jobs += 1;
                self.groups.insert(
                    key,
                    Group {
                        entries,
                        due,
                        attempt: 0,
                        done: HashSet::new(),
                        in_flight: false,
                    },
                );
                self.schedule.insert((due, key));
            }
        }
    }

    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::Job(entry, durable) => {
                if !durable {
                    self.late.push(entry);
                }
                self.add(entry, Instant::now() + self.pacing.collapse);
            }
            Event::Settle(key) => {
                self.settled.push(key);
                let gk = (key.user.0, key.channel.0);
                if let Some(group) = self.groups.get_mut(&gk) {
                    if group.entries.remove(&key.seq).is_some() {
                        self.pending_jobs -= 1;
                        self.ctx.metrics.dropped("none", "online", 1);
                    }
                    if group.entries.is_empty() && !group.in_flight {
                        self.remove_group(gk);
                    }
                }
            }
            Event::Online(user) => self.user_online(user),
        }
    }

    /// A device of `user` connected: it syncs everything pending, so the
    /// jobs are settled unsent and the counts start again from zero.
    fn user_online(&mut self, user: u64) {
        let keys: Vec<GroupKey> = self
            .groups
            .range((user, 0)..=(user, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.drop_group(key, "online");
        }
        let badges: Vec<GroupKey> = self
            .badges
            .range((user, 0)..=(user, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in badges {
            self.badges.remove(&key);
        }
    }

    fn remove_group(&mut self, key: GroupKey) -> Option<Group> {
        let group = self.groups.remove(&key)?;
        self.schedule.remove(&(group.due, key));
        Some(group)
    }

    /// Settles every job of a group without a notification. An attempt in
    /// flight finds its group gone and only settles what it covered.
    pub(super) fn drop_group(&mut self, key: GroupKey, reason: &'static str) {
        let Some(group) = self.remove_group(key) else {
            return;
        };
        if group.in_flight {
            // Its result still arrives and must not count as a free slot
            // twice: keep an empty placeholder until then.
            self.groups.insert(
                key,
                Group {
                    entries: BTreeMap::new(),
                    due: group.due,
                    attempt: 0,
                    done: HashSet::new(),
                    in_flight: true,
                },
            );
        }
        let n = group.entries.len();
        self.pending_jobs -= n;
        self.metrics().dropped("none", reason, n as u64);
        self.settled.extend(group.entries.values().map(|e| e.key));
    }
}
