-- 0009: the event log (an outbox, see backends/events.go). Every write
-- stores its events in its own transaction; seq numbers them in commit
-- order without gaps, so that a reader that has seen seq n has seen every
-- event below n.
--
-- seq is not a sequence: nextval hands out numbers in the order
-- transactions ask, and one that took 5 may commit after one that took 6
-- (a reader already past 6 would never see 5). A writer takes its numbers
-- from event_seq, the last statement before its COMMIT: the UPDATE locks
-- the one row until the transaction ends, so the next writer numbers after
-- it, and only once it is visible.
CREATE TABLE event_seq (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint  NOT NULL
);

INSERT INTO event_seq (one, last) VALUES (true, 0);

-- Events go with their task (ON DELETE CASCADE): the log is kept as long
-- as the tasks are. body is the event's JSON (backends.Event) without seq,
-- as text, byte for byte (like every JSON column here); the other columns
-- repeat what readers filter on.
CREATE TABLE events (
    seq        bigint      PRIMARY KEY,
    type       text        NOT NULL,
    task_id    bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    step_id    bigint,
    namespace  text        NOT NULL,
    created_at timestamptz NOT NULL,
    body       text        NOT NULL
);

CREATE INDEX events_task ON events (task_id, seq);
CREATE INDEX events_namespace ON events (namespace, seq);

-- The durable readers' positions: seq is the last event handled; owner
-- holds the lease (one node delivers) until lease_until. NULL: no lease.
CREATE TABLE event_cursors (
    name        text        PRIMARY KEY,
    seq         bigint      NOT NULL,
    owner       text,
    lease_until timestamptz,
    updated_at  timestamptz NOT NULL
);

-- Events a cursor gave up delivering.
CREATE TABLE event_dead_letters (
    cursor     text        NOT NULL,
    seq        bigint      NOT NULL,
    attempts   integer     NOT NULL,
    last_error text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (cursor, seq)
);
