-- Snapshots of command-service's in-memory state, one per topic partition, so that a start reads
-- only the log after `next_offset`. A cache: deleting every row only makes starts read more of
-- the log.
CREATE TABLE command_snapshots (
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL CHECK ("partition" >= 0),
    -- Every record below this offset is in `state`.
    next_offset  bigint      NOT NULL CHECK (next_offset >= 0),
    -- The shape of `state` (command-service's `snapshot::FORMAT`).
    format       integer     NOT NULL,
    -- JSON.
    state        bytea       NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, "partition")
);
