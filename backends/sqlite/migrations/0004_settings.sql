-- 0004: node-wide settings that must live with the data, such as the hash
-- of the bootstrap admin API key (never the key itself).
CREATE TABLE taskerd_settings (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
