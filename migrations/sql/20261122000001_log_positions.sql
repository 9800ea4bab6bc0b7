-- Idempotent projection bookkeeping.
--
-- Every event a projector applied, so a redelivered event is recognised and skipped in the same
-- transaction that would apply it again.
CREATE TABLE processed_events (
    event_id     uuid        PRIMARY KEY,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Where each projection resumes: the next offset to read per topic partition, written in the
-- same transaction as the batch it follows.
CREATE TABLE projection_offsets (
    projection   text        NOT NULL,
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL CHECK ("partition" >= 0),
    next_offset  bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, "partition")
);
