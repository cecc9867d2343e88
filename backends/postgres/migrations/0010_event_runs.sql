-- 0010: the event log as one row per run of a task's events (see
-- backends/eventrows.go). A write's events come grouped by task, and one
-- task's consecutive events get consecutive numbers, so each run is stored
-- as one row: seq is its first event's number, last_seq its last's, and
-- body the events as one JSON array without their numbers (event i of a row
-- is seq+i). A claim wrote three rows per step before; the row and index
-- entries were most of what the log cost a write.
--
-- Runs do not overlap, so the row holding event n is the one with the
-- greatest seq at or below n: a reader finds it by the primary key. The
-- namespace filter keeps no index of its own any more: it reads the rows
-- the seq range already selects (events_namespace cost every write an
-- index entry for a reader that is rare).
--
-- The numbers do not change: event_seq stays as it is, and each event of
-- the old log becomes a run of one.
ALTER TABLE events RENAME TO events_0009;
ALTER TABLE events_0009 RENAME CONSTRAINT events_pkey TO events_0009_pkey;
ALTER TABLE events_0009 RENAME CONSTRAINT events_task_id_fkey TO events_0009_task_id_fkey;
DROP INDEX events_task;
DROP INDEX events_namespace;

-- Events go with their task (ON DELETE CASCADE), as before; body is text,
-- byte for byte, like every JSON column here.
CREATE TABLE events (
    seq        bigint      PRIMARY KEY,  -- the run's first event
    last_seq   bigint      NOT NULL,     -- and its last
    task_id    bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    namespace  text        NOT NULL,
    created_at timestamptz NOT NULL,
    body       text        NOT NULL      -- a JSON array of backends.Event
);

INSERT INTO events (seq, last_seq, task_id, namespace, created_at, body)
SELECT seq, seq, task_id, namespace, created_at, '[' || body || ']' FROM events_0009;

DROP TABLE events_0009;

-- After the copy: one index build instead of an entry per copied row.
CREATE INDEX events_task ON events (task_id, seq);
