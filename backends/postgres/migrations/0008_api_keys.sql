-- 0008: API keys people manage with `taskerd keys` (issue 15), and their
-- audit trail. Only the SHA-256 of a key is stored, never the key; every
-- node reads them here, so a revocation reaches all nodes at once. Keys are
-- revoked, not deleted, so that the audit keeps naming them.
CREATE TABLE api_keys (
    id         text        PRIMARY KEY,
    subject    text        NOT NULL,
    roles      text[]      NOT NULL,
    namespaces text[]      NOT NULL,
    key_sha256 text        NOT NULL UNIQUE,  -- hex, lower case
    created_at timestamptz NOT NULL,
    created_by text        NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    revoked_by text
);

CREATE TABLE api_key_events (
    id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id text        NOT NULL REFERENCES api_keys (id),
    action text        NOT NULL CHECK (action IN ('created', 'revoked')),
    actor  text        NOT NULL,
    at     timestamptz NOT NULL,
    detail text        NOT NULL
);

CREATE INDEX api_key_events_key ON api_key_events (key_id, id);
