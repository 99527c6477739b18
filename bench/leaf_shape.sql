-- The leaf table's shape against its cost to write (issue 14's ingest target), server side
-- only: 400,000 leaves of 4 monthly logs inserted into each shape from one temporary table,
-- twice, a CHECKPOINT between runs. Run on a scratch database of a tuned server:
--   psql postgresql://postgres@127.0.0.1:PORT/postgres -f bench/leaf_shape.sql
\timing on
DROP DATABASE IF EXISTS leaf_shape;
CREATE DATABASE leaf_shape;
\c leaf_shape
-- heap: no index at all (the floor)
CREATE TABLE heap (family varchar(16) NOT NULL, month varchar(7) NOT NULL, leaf_index bigint NOT NULL, entry_id bigint NOT NULL, leaf_hash bytea NOT NULL, salt bytea);
-- shipped: log_leaf as migration 0009 builds it
CREATE TABLE shipped (family varchar(16) NOT NULL, month varchar(7) NOT NULL, leaf_index bigint NOT NULL, entry_id bigint NOT NULL, leaf_hash bytea NOT NULL, salt bytea, PRIMARY KEY (family, month, leaf_index), UNIQUE (family, entry_id));
-- collate_c: the same with byte-order keys (the cluster's C.UTF-8 is compared by strcoll)
CREATE TABLE collate_c (family varchar(16) COLLATE "C" NOT NULL, month varchar(7) COLLATE "C" NOT NULL, leaf_index bigint NOT NULL, entry_id bigint NOT NULL, leaf_hash bytea NOT NULL, salt bytea, PRIMARY KEY (family, month, leaf_index), UNIQUE (family, entry_id));
-- log_id: a small integer per log instead of (family, month)
CREATE TABLE log_id (log_id smallint NOT NULL, leaf_index bigint NOT NULL, entry_id bigint NOT NULL, leaf_hash bytea NOT NULL, salt bytea, PRIMARY KEY (log_id, leaf_index), UNIQUE (entry_id));
-- brin: the primary key, and entry ids found through a BRIN range index
CREATE TABLE brin (family varchar(16) NOT NULL, month varchar(7) NOT NULL, leaf_index bigint NOT NULL, entry_id bigint NOT NULL, leaf_hash bytea NOT NULL, salt bytea, PRIMARY KEY (family, month, leaf_index));
CREATE INDEX ON brin USING brin (entry_id);
CREATE TEMP TABLE src AS SELECT 'sat'::text f, '2026-0' || (1 + g / 100000) m, g % 100000 li, g id, sha256(int8send(g)) h, substr(sha256(int8send(-g)), 1, 16) s FROM generate_series(0, 399999) g;
\echo round 1: heap, shipped, collate_c, log_id, brin
CHECKPOINT;
INSERT INTO heap SELECT * FROM src;
CHECKPOINT;
INSERT INTO shipped SELECT * FROM src;
CHECKPOINT;
INSERT INTO collate_c SELECT * FROM src;
CHECKPOINT;
INSERT INTO log_id SELECT 1 + id / 100000, li, id, h, s FROM src;
CHECKPOINT;
INSERT INTO brin SELECT * FROM src;
TRUNCATE heap, shipped, collate_c, log_id, brin;
\echo round 2: heap, shipped, collate_c, log_id, brin
CHECKPOINT;
INSERT INTO heap SELECT * FROM src;
CHECKPOINT;
INSERT INTO shipped SELECT * FROM src;
CHECKPOINT;
INSERT INTO collate_c SELECT * FROM src;
CHECKPOINT;
INSERT INTO log_id SELECT 1 + id / 100000, li, id, h, s FROM src;
CHECKPOINT;
INSERT INTO brin SELECT * FROM src;
\c postgres
DROP DATABASE leaf_shape;
