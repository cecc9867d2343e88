-- 0006: API keys people manage with `taskerd keys` (issue 15), and their
-- audit trail. Only the SHA-256 of a key is stored, never the key. Keys are
-- revoked, not deleted, so that the audit keeps naming them.
CREATE TABLE api_keys (
    id         TEXT    PRIMARY KEY,
    subject    TEXT    NOT NULL,
    roles      TEXT    NOT NULL,            -- JSON array of strings
    namespaces TEXT    NOT NULL,            -- JSON array of strings
    key_sha256 TEXT    NOT NULL UNIQUE,     -- hex, lower case
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_by TEXT
) STRICT;

CREATE TABLE api_key_events (
    id     INTEGER PRIMARY KEY,
    key_id TEXT    NOT NULL REFERENCES api_keys (id),
    action TEXT    NOT NULL CHECK (action IN ('created', 'revoked')),
    actor  TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    detail TEXT    NOT NULL
) STRICT;

CREATE INDEX api_key_events_key ON api_key_events (key_id, id);
