-- GoChat schema version 1 (SQLite). TEXT compares byte by byte (BINARY
-- collation), so ids are case-sensitive as they are everywhere else.
--
-- Statements that name a traffic table with the {{t}} placeholder are run
-- once per table of the database's layout: {{t}} is empty in a layout of one
-- table per database (the plain names below) and _0, _1, ... otherwise.

CREATE TABLE IF NOT EXISTS users (
    uid           TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per conversation; last_seq is the seq of its newest message and
-- the source of the next seq.
CREATE TABLE IF NOT EXISTS conversations{{t}} (
    conv_id       TEXT    NOT NULL PRIMARY KEY,
    kind          TEXT    NOT NULL,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The conversations each user takes part in.
CREATE TABLE IF NOT EXISTS user_conversations{{t}} (
    uid           TEXT    NOT NULL,
    conv_id       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    peer          TEXT    NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (uid, conv_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages{{t}} (
    conv_id       TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    sender        TEXT    NOT NULL,
    recipient     TEXT    NOT NULL DEFAULT '',
    client_msg_id TEXT    NOT NULL,
    content_type  TEXT    NOT NULL DEFAULT '',
    body          BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conv_id, seq)
);

-- A sender's retransmission of the same client message id finds the
-- original through this index.
CREATE UNIQUE INDEX IF NOT EXISTS messages{{t}}_dedup ON messages{{t}} (conv_id, sender, client_msg_id);
