-- confab's directory on SQLite: users, sessions, devices, friendships,
-- channels and their members. Ids are 64-bit integers handed out by
-- AUTOINCREMENT (never reused, so a deleted row's id never comes back).
-- Times are Unix seconds.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- [a-z0-9_.-]{3,32}, checked by the API; binary collation, so prefix
    -- search is a range scan of the unique index.
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    -- argon2id, PHC string format (parameters and salt included).
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- One row per login. The access tokens of a session carry its id (jti);
-- the refresh token is stored as its SHA-256, never in clear.
CREATE TABLE sessions (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash          TEXT    NOT NULL UNIQUE,
    -- The refresh token this one replaced: presenting it again means it
    -- was stolen or replayed, and the whole session is revoked.
    previous_refresh_hash TEXT,
    created_at            INTEGER NOT NULL,
    refreshed_at          INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL,
    revoked_at            INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_previous_refresh ON sessions (previous_refresh_hash);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE devices (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform   TEXT    NOT NULL CHECK (platform IN ('fcm', 'apns', 'webhook')),
    push_token TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    -- A push token identifies one app installation: it belongs to whoever
    -- registered it last.
    UNIQUE (platform, push_token)
);
CREATE INDEX devices_user ON devices (user_id);

-- One row per unordered pair (user_low < user_high): a pending request
-- from `requester`, or an accepted friendship.
CREATE TABLE friendships (
    user_low   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    requester  INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('pending', 'accepted')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_low, user_high),
    CHECK (user_low < user_high),
    CHECK (requester IN (user_low, user_high))
);
CREATE INDEX friendships_high ON friendships (user_high);

-- DMs and groups share one id space: a channel id names one message log.
CREATE TABLE channels (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('dm', 'group')),
    name       TEXT,
    owner_id   INTEGER REFERENCES users (id),
    created_at INTEGER NOT NULL
);

CREATE TABLE channel_members (
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_user ON channel_members (user_id);

-- The one DM channel of each unordered pair.
CREATE TABLE dm_pairs (
    user_low   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL UNIQUE REFERENCES channels (id) ON DELETE CASCADE,
    PRIMARY KEY (user_low, user_high),
    CHECK (user_low < user_high)
);
