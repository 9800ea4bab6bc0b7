-- Read models live in generations: each is a schema (`rm_<n>`) holding every read model table
-- plus its own bookkeeping (`processed_events`, `projection_offsets`), created from
-- `migrations/read-model/tables.sql`. A rebuild fills a new generation from offset 0 while the
-- active one keeps serving, then switches the pointer below in one transaction.

-- The bookkeeping moves into each generation; these public tables were never written.
DROP TABLE IF EXISTS processed_events;
DROP TABLE IF EXISTS projection_offsets;

-- Trigram similarity for typo-tolerant search (a trusted extension: the database owner may
-- create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE read_model_generations (
    generation   integer     PRIMARY KEY,
    schema_name  text        NOT NULL UNIQUE,
    -- The version of tables.sql the generation was created with.
    ddl_version  integer     NOT NULL,
    -- building → active → retired
    state        text        NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    retired_at   timestamptz
);
CREATE UNIQUE INDEX read_model_generations_one_active ON read_model_generations ((true))
    WHERE state = 'active';

-- The pointer every projector batch locks FOR SHARE and a switch-over locks FOR UPDATE, so a
-- switch waits for batches in flight and no batch writes into a retired generation.
CREATE TABLE read_model_active (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    generation integer     NOT NULL REFERENCES read_model_generations (generation),
    switched_at timestamptz NOT NULL DEFAULT now()
);

-- Records the projector could not decode or apply. The same record is also produced to the
-- dead-letter topic (`<topic>.dlq`); this table lists them and remembers re-drives. Keyed by
-- the source position, so a replay that meets the same record again does not list it twice.
CREATE TABLE dead_letters (
    topic          text        NOT NULL,
    "partition"    integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    record_key     text,
    payload        bytea       NOT NULL,
    error          text        NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT now(),
    redriven_at    timestamptz,
    redrive_error  text,
    PRIMARY KEY (topic, "partition", "offset")
);
