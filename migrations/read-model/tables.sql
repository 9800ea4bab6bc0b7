-- The read models of one generation, created inside its own schema (the search path is set to
-- `<generation schema>, public` while this runs). Changing a read model means changing this
-- file, bumping READ_MODEL_VERSION in migrations/src/lib.rs, and rebuilding into a new
-- generation (`projection-service rebuild`).

-- ------------------------------------------------------------------ bookkeeping

-- Every event this generation applied, so a redelivered event is skipped in the very
-- transaction that would apply it again.
CREATE TABLE processed_events (
    event_id    uuid    PRIMARY KEY,
    "partition" integer NOT NULL,
    "offset"    bigint  NOT NULL
);

-- The next offset to read per partition, written in the same transaction as the batch.
CREATE TABLE projection_offsets (
    "partition" integer     PRIMARY KEY CHECK ("partition" >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Commits skipped by the log-order arbitration rule (lost races), for operators.
CREATE TABLE lost_races (
    "partition"      integer     NOT NULL,
    "offset"         bigint      NOT NULL,
    commit_id        uuid        NOT NULL,
    aggregate_id     uuid        NOT NULL,
    expected_version bigint      NOT NULL,
    current_version  bigint      NOT NULL,
    PRIMARY KEY ("partition", "offset")
);

-- ------------------------------------------------------------------ tasks

CREATE TABLE tasks (
    task_id       uuid        PRIMARY KEY,
    user_id       text        NOT NULL,
    task_number   bigint      NOT NULL,
    title         text        NOT NULL,
    description   text,
    -- 0 low, 1 medium, 2 high, 3 urgent: sorts by urgency.
    priority      smallint    NOT NULL,
    -- The due date as given (`{"kind":"date",…}` or `{"kind":"at",…}`).
    due           jsonb,
    -- When it is due, for filters and sorting: the instant, or the end of a date-only due (UTC).
    due_at        timestamptz,
    -- Tags as written, and their lower-case forms for filtering.
    tags          text[]      NOT NULL DEFAULT '{}',
    tag_keys      text[]      NOT NULL DEFAULT '{}',
    recurrence    jsonb,
    occurrence_of jsonb,
    -- open, completed or deleted
    status        text        NOT NULL,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    deleted_at    timestamptz,
    -- The reminders a task shows, not removed, oldest first: `[{"id", "time", "remind_at",
    -- "status", "fired"}]`. The same facts as its rows in `reminders`, kept here so that a page of
    -- tasks is read from the tasks alone (one index probe per task less).
    reminders     jsonb       NOT NULL DEFAULT '[]',
    -- The log position of the task's last applied commit.
    "partition"   integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    -- Full-text search: the title weighs more than the description. The 'simple' configuration
    -- does not stem, so it works for every language and prefix matching (`word:*`) stays exact.
    search        tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') ||
        setweight(to_tsvector('simple', coalesce(description, '')), 'B')
    ) STORED
);
-- Keyset pagination, per user and status: every sort key, with the task id as the tie-breaker.
-- A list of open (or of completed) tasks reads exactly its own rows in its order and stops at
-- the page's end; `status=all` merges the open and the completed ranges. Deleted tasks are
-- never listed, so these indexes leave them out.
CREATE INDEX tasks_by_created  ON tasks (user_id, status, created_at, task_id)
    WHERE status <> 'deleted';
CREATE INDEX tasks_by_updated  ON tasks (user_id, status, updated_at, task_id)
    WHERE status <> 'deleted';
CREATE INDEX tasks_by_due      ON tasks (user_id, status, due_at, task_id)
    WHERE status <> 'deleted';
CREATE INDEX tasks_by_due_desc ON tasks (user_id, status, due_at DESC NULLS LAST, task_id DESC)
    WHERE status <> 'deleted';
CREATE INDEX tasks_by_priority ON tasks (user_id, status, priority, task_id)
    WHERE status <> 'deleted';
CREATE INDEX tasks_by_title    ON tasks (user_id, status, title, task_id)
    WHERE status <> 'deleted';
-- Not unique: numbers come from the log, and the projector must never refuse an event.
CREATE INDEX tasks_by_number   ON tasks (user_id, task_number);
-- No GIN index on tags, `search` or trigrams of the title: every query is one user's, and such an
-- index holds every user's tasks, so a plan starting from it reads other users' matches (a
-- tag or a common word: a good share of all tasks) only to drop them. Tags and search text are
-- checked on the user's rows instead.

-- Per-user tag counts over tasks that are not deleted (open ones counted apart).
CREATE TABLE tags (
    user_id    text    NOT NULL,
    tag_key    text    NOT NULL,
    -- The spelling first used.
    tag        text    NOT NULL,
    task_count integer NOT NULL CHECK (task_count >= 0),
    open_count integer NOT NULL CHECK (open_count >= 0),
    -- Reserved for a colour a later event may set; null until then.
    colour     text,
    PRIMARY KEY (user_id, tag_key)
);
-- Prefix autocomplete (`tag_key LIKE 'pre%'`) whatever the database collation.
CREATE INDEX tags_prefix ON tags (user_id, tag_key text_pattern_ops);

-- ------------------------------------------------------------------ reminders, notifications

CREATE TABLE reminders (
    reminder_id    uuid        PRIMARY KEY,
    user_id        text        NOT NULL,
    task_id        uuid        NOT NULL,
    -- `{"kind":"at","at":…}` or `{"kind":"before_due","seconds":…}`
    time           jsonb       NOT NULL,
    -- When it goes off; null for an offset before a due date the task no longer has.
    remind_at      timestamptz,
    -- pending, fired or cancelled (removed, or its task completed or deleted)
    status         text        NOT NULL,
    fired_at       timestamptz,
    -- When it was removed from its task (removed reminders stay cancelled, even on reopen).
    removed_at     timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX reminders_by_user ON reminders (user_id, remind_at, reminder_id);
-- A task's reminders, for the projector loading the tasks of a batch.
CREATE INDEX reminders_by_task ON reminders (task_id, created_at, reminder_id);

CREATE TABLE notifications (
    -- The event that caused it.
    notification_id uuid        PRIMARY KEY,
    user_id         text        NOT NULL,
    kind            text        NOT NULL,
    task_id         uuid        NOT NULL,
    reminder_id     uuid,
    title           text        NOT NULL,
    created_at      timestamptz NOT NULL,
    "partition"     integer     NOT NULL,
    "offset"        bigint      NOT NULL
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at DESC, notification_id);

-- ------------------------------------------------------------------ audit trail

-- Every accepted event, as stored (current schema version), with who, why and where.
CREATE TABLE audit_events (
    event_id          uuid        PRIMARY KEY,
    user_id           text        NOT NULL,
    aggregate_type    text        NOT NULL,
    aggregate_id      uuid        NOT NULL,
    aggregate_version bigint      NOT NULL,
    event_type        text        NOT NULL,
    schema_version    integer     NOT NULL,
    occurred_at       timestamptz NOT NULL,
    actor             text        NOT NULL,
    correlation_id    uuid        NOT NULL,
    causation_id      uuid        NOT NULL,
    commit_id         uuid        NOT NULL,
    payload           jsonb       NOT NULL,
    "partition"       integer     NOT NULL,
    "offset"          bigint      NOT NULL
);
CREATE UNIQUE INDEX audit_by_aggregate ON audit_events (aggregate_id, aggregate_version);
CREATE INDEX audit_by_user ON audit_events (user_id, "offset", aggregate_version);
