-- Push notifications: per-member mute, and push tokens the provider
-- reported dead. A dead token's device stays (its id is still the
-- device_id the client presents to the gateway); it just gets no pushes
-- until the app registers a token again.

ALTER TABLE channel_members ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;

-- Unix seconds of the provider's "unregistered" answer; NULL while valid.
ALTER TABLE devices ADD COLUMN push_invalid_at INTEGER;
