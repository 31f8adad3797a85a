-- GoChat schema version 1 (MySQL / MariaDB, InnoDB, utf8mb4). Ids are
-- VARBINARY so comparisons are byte-exact and case-sensitive; bodies are
-- MEDIUMBLOB (up to 16 MiB) so any bytes round-trip unchanged.
--
-- Statements that name a traffic table with the {{t}} placeholder are run
-- once per table of the database's layout: {{t}} is empty in a layout of one
-- table per database (the plain names below) and _0, _1, ... otherwise.

CREATE TABLE IF NOT EXISTS users (
    uid           VARBINARY(64)  NOT NULL,
    name          VARCHAR(255)   NOT NULL DEFAULT '',
    created_at_ms BIGINT         NOT NULL,
    PRIMARY KEY (uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per conversation; last_seq is the seq of its newest message and
-- the source of the next seq. Appends lock this row (SELECT ... FOR UPDATE).
CREATE TABLE IF NOT EXISTS conversations{{t}} (
    conv_id       VARBINARY(140) NOT NULL,
    kind          VARCHAR(8)     NOT NULL,
    last_seq      BIGINT         NOT NULL DEFAULT 0,
    created_at_ms BIGINT         NOT NULL,
    updated_at_ms BIGINT         NOT NULL,
    PRIMARY KEY (conv_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The conversations each user takes part in.
CREATE TABLE IF NOT EXISTS user_conversations{{t}} (
    uid           VARBINARY(64)  NOT NULL,
    conv_id       VARBINARY(140) NOT NULL,
    kind          VARCHAR(8)     NOT NULL,
    peer          VARBINARY(64)  NOT NULL DEFAULT '',
    created_at_ms BIGINT         NOT NULL,
    PRIMARY KEY (uid, conv_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS messages{{t}} (
    conv_id       VARBINARY(140) NOT NULL,
    seq           BIGINT         NOT NULL,
    sender        VARBINARY(64)  NOT NULL,
    recipient     VARBINARY(64)  NOT NULL DEFAULT '',
    client_msg_id VARBINARY(64)  NOT NULL,
    content_type  VARBINARY(64)  NOT NULL DEFAULT '',
    body          MEDIUMBLOB     NOT NULL,
    created_at_ms BIGINT         NOT NULL,
    PRIMARY KEY (conv_id, seq),
    -- A sender's retransmission of the same client message id finds the
    -- original through this key.
    UNIQUE KEY messages_dedup (conv_id, sender, client_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
