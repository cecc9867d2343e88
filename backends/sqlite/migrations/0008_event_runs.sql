-- 0008: the event log as one row per run (backends/eventrows.go). The
-- events one write adds for one task have consecutive numbers, so they are
-- stored together: seq is the run's first event, last_seq its last, body a
-- JSON array of the events without their seqs. A claimed step's three
-- events are one row instead of three, and the writer counts the numbers
-- in memory (event_seq below) instead of asking AUTOINCREMENT per row.

-- The last number handed out. The writer reads it at a transaction's first
-- event, counts on in memory and writes it back once before COMMIT; a
-- rolled-back transaction leaves it as it was, so numbers stay without
-- gaps, and the newest events going with their task never hands their
-- numbers out again. It starts where AUTOINCREMENT was.
CREATE TABLE event_seq (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    last INTEGER NOT NULL
) STRICT;

INSERT INTO event_seq (one, last) VALUES (1, max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
    coalesce((SELECT max(seq) FROM events), 0)));

CREATE TABLE event_runs (
    seq        INTEGER PRIMARY KEY,            -- the run's first event
    last_seq   INTEGER NOT NULL,               -- its last (seq when alone)
    -- Retention is the task's: its events go with it.
    task_id    INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    namespace  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,               -- the write's instant
    body       TEXT    NOT NULL                -- JSON array of the events, without seq
) STRICT;

-- Each event of the old log is a run of its own.
INSERT INTO event_runs (seq, last_seq, task_id, namespace, created_at, body)
    SELECT seq, seq, task_id, namespace, created_at, '[' || body || ']' FROM events ORDER BY seq;

DROP TABLE events;
ALTER TABLE event_runs RENAME TO events;

-- A task's events (GET /v1/tasks/{id}/events, and the cascade). No index
-- on namespace any more: a reader of some namespaces reads the rows its
-- seq range selects and keeps its own.
CREATE INDEX events_task ON events (task_id, seq);
