-- GoChat schema version 3: groups, client cursors and recalls.
--
-- chat_groups and group_members are placed like the group's messages: by
-- the conversation id "g:<group_id>", so {{t}} is the table number of that
-- id and the append transaction checks membership in its own database.
-- A user's list row of kind "group" in user_conversations (placed by uid)
-- is written before the membership and is only a hint; group_members is the
-- truth (see docs/DATAPROXY.md).

CREATE TABLE IF NOT EXISTS chat_groups{{t}} (
    group_id        TEXT    NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL DEFAULT '',
    owner           TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    dissolved_at_ms INTEGER NOT NULL DEFAULT 0,
    member_count    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS group_members{{t}} (
    group_id     TEXT    NOT NULL,
    uid          TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    joined_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, uid)
) WITHOUT ROWID;

-- What the user has acknowledged as received and marked read; they only grow.
ALTER TABLE user_conversations{{t}} ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_conversations{{t}} ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;

-- recalled: the sender took the message back (its body is then emptied);
-- ref_seq: for a recall event, the seq it recalls.
ALTER TABLE messages{{t}} ADD COLUMN recalled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages{{t}} ADD COLUMN ref_seq INTEGER NOT NULL DEFAULT 0;
