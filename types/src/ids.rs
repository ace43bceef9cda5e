//! Identifier and sequence newtypes, so that a user id can never be passed
//! where a channel id is expected, nor a channel sequence where an inbox
//! sequence is. All are `u64` on the wire and in storage keys, and
//! serialise as plain numbers.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! u64_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<u64> for $name {
            fn from(raw: u64) -> Self {
                Self(raw)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }
    };
}

macro_rules! sequence {
    ($name:ident) => {
        impl $name {
            /// Before the first entry: what a reader that has nothing holds.
            pub const ZERO: $name = $name(0);

            /// The entry after this one.
            pub const fn next(self) -> $name {
                $name(self.0 + 1)
            }

            /// The entry before this one (`ZERO` stays `ZERO`).
            pub const fn prev(self) -> $name {
                $name(self.0.saturating_sub(1))
            }

            /// Entries from `self` (exclusive) up to `to` (inclusive).
            pub const fn distance_to(self, to: $name) -> u64 {
                to.0.saturating_sub(self.0)
            }
        }
    };
}

u64_newtype!(
    /// A user account; owns an inbox (message sync queue) and presence.
    UserId
);
u64_newtype!(
    /// A channel (direct conversation or group); owns a gapless message log.
    ChannelId
);
u64_newtype!(
    /// One of a user's devices; owns delivery/read cursors and scopes
    /// client message ids.
    DeviceId
);
u64_newtype!(
    /// A message's place in its channel: gapless from 1 per channel.
    Seq
);
u64_newtype!(
    /// An entry's place in a user's inbox: gapless from 1 per user, what
    /// every device's cursor counts.
    InboxSeq
);

sequence!(Seq);
sequence!(InboxSeq);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_numbers_in_json() {
        assert_eq!(serde_json::to_string(&UserId(7)).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<InboxSeq>("42").unwrap(),
            InboxSeq(42)
        );
    }

    #[test]
    fn sequences_step_without_wrapping_below_zero() {
        assert_eq!(Seq::ZERO.next(), Seq(1));
        assert_eq!(InboxSeq(5).prev(), InboxSeq(4));
        assert_eq!(InboxSeq::ZERO.prev(), InboxSeq::ZERO);
        assert_eq!(InboxSeq(3).distance_to(InboxSeq(10)), 7);
        assert_eq!(InboxSeq(10).distance_to(InboxSeq(3)), 0);
    }
}
