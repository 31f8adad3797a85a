-- GoChat schema version 2: the record of the sharding layout. One row
-- (id = 1) per database, written once when the database joins a layout and
-- compared with the configuration at every start (see docs/DATAPROXY.md).
-- layout_id is the same random id in every database of one cluster; shard is
-- this database's position in the list of shard databases.

CREATE TABLE IF NOT EXISTS shard_layout (
    id            INTEGER NOT NULL PRIMARY KEY,
    layout_id     TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    dbs           INTEGER NOT NULL,
    tables_per_db INTEGER NOT NULL,
    shard         INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
