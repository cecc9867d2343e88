-- 0003: node-wide settings that must live with the data, such as the hash
-- of the bootstrap admin API key (never the key itself).
CREATE TABLE taskerd_settings (
    name       text        PRIMARY KEY,
    value      text        NOT NULL,
    created_at timestamptz NOT NULL
);
