//! Identifier newtypes, so a user id can never be passed where a channel id is
//! expected; every key in the store is built from these.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

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
    };
}

id_type!(
    /// A user account; owns an inbox (message sync queue) and presence.
    UserId
);
id_type!(
    /// A channel (direct conversation or group); owns a gapless message log.
    ChannelId
);
id_type!(
    /// One of a user's devices; owns delivery/read cursors and scopes client message ids.
    DeviceId
);
