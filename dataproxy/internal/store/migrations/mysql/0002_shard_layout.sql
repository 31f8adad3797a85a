-- GoChat schema version 2: the record of the sharding layout. One row
-- (id = 1) per database, written once when the database joins a layout and
-- compared with the configuration at every start (see docs/DATAPROXY.md).
-- layout_id is the same random id in every database of one cluster; shard is
-- this database's position in the list of shard databases.

CREATE TABLE IF NOT EXISTS shard_layout (
    id            INT          NOT NULL,
    layout_id     VARCHAR(64)  NOT NULL,
    hash          VARCHAR(32)  NOT NULL,
    dbs           INT          NOT NULL,
    tables_per_db INT          NOT NULL,
    shard         INT          NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
