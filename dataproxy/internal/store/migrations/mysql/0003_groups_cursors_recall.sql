-- GoChat schema version 3: groups, client cursors and recalls.
--
-- chat_groups and group_members are placed like the group's messages: by
-- the conversation id "g:<group_id>", so {{t}} is the table number of that
-- id and the append transaction checks membership in its own database.
-- (The table is not called "groups": GROUPS is a reserved word in MySQL 8.)
-- A user's list row of kind "group" in user_conversations (placed by uid)
-- is written before the membership and is only a hint; group_members is the
-- truth (see docs/DATAPROXY.md).
--
-- MySQL commits each DDL statement on its own; the migration runner treats
-- "duplicate column" on a second run as already done, and the two ALTERs
-- each add their columns in one atomic statement.

CREATE TABLE IF NOT EXISTS chat_groups{{t}} (
    group_id        VARBINARY(64)  NOT NULL,
    name            VARCHAR(255)   NOT NULL DEFAULT '',
    owner           VARBINARY(64)  NOT NULL,
    created_at_ms   BIGINT         NOT NULL,
    dissolved_at_ms BIGINT         NOT NULL DEFAULT 0,
    member_count    INT            NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS group_members{{t}} (
    group_id      VARBINARY(64)  NOT NULL,
    uid           VARBINARY(64)  NOT NULL,
    role          VARCHAR(8)     NOT NULL,
    joined_at_ms  BIGINT         NOT NULL,
    PRIMARY KEY (group_id, uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- What the user has acknowledged as received and marked read; they only grow.
ALTER TABLE user_conversations{{t}}
    ADD COLUMN read_seq      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN delivered_seq BIGINT NOT NULL DEFAULT 0;

-- recalled: the sender took the message back (its body is then emptied);
-- ref_seq: for a recall event, the seq it recalls.
ALTER TABLE messages{{t}}
    ADD COLUMN recalled TINYINT NOT NULL DEFAULT 0,
    ADD COLUMN ref_seq  BIGINT  NOT NULL DEFAULT 0;
