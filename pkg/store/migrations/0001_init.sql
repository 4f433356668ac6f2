-- 0001_init: the first schema of the LightShark-mini store.
-- Never edit this file once shipped: add 0002_….sql instead.
--
-- Units. Flow times (first_seen, last_seen) are capture times in Unix
-- nanoseconds; packet sample times are capture times in Unix milliseconds (the
-- record's own unit); flow windows are capture-time windows in Unix seconds;
-- capture_stats rows and capturers' first/last seen are the API server's clock
-- (there is no capture time for them) in Unix seconds and nanoseconds.
-- A zero time ("unknown") is stored as 0.
--
-- Counters are INTEGER (int64): uint64 values saturate at 2^63-1.
-- Addresses are stored twice: the text the capturer sent, and a 16-byte blob
-- (IPv4 as IPv4-mapped IPv6, RFC 4291 2.5.5.2) so that an address or a CIDR
-- filter is an index range scan on the blob (memcmp order is address order).

-- capturers: one row per capturer instance (one run of lightshark-capturer),
-- with its hello.
CREATE TABLE capturers (
    rid         INTEGER PRIMARY KEY,
    instance_id TEXT    NOT NULL UNIQUE,
    hostname    TEXT    NOT NULL DEFAULT '',
    software    TEXT    NOT NULL DEFAULT '',
    interface   TEXT    NOT NULL DEFAULT '',
    link_type   INTEGER NOT NULL DEFAULT 0,
    filter      TEXT    NOT NULL DEFAULT '',
    start_time  INTEGER NOT NULL DEFAULT 0, -- Unix ns, capturer's clock
    first_seen  INTEGER NOT NULL,           -- Unix ns, first batch received
    last_seen   INTEGER NOT NULL            -- Unix ns, last batch received
);
CREATE INDEX capturers_last_seen ON capturers (last_seen);

-- applied_batches: the IPC dedup state, written in the transaction of the
-- batch it records. A batch is applied only when its seq is greater than
-- last_seq (the seq of one instance only increases; gaps are allowed).
CREATE TABLE applied_batches (
    instance_id TEXT    PRIMARY KEY,
    last_seq    INTEGER NOT NULL CHECK (last_seq > 0),
    applied_at  INTEGER NOT NULL            -- Unix ns, server clock
) WITHOUT ROWID;

-- flows: one row per flow id, the latest record received (counters are
-- cumulative, so the latest record is the whole truth). end_reason is set
-- once the final record arrived.
CREATE TABLE flows (
    rid              INTEGER PRIMARY KEY,   -- stable key for cursors and windows
    id               TEXT    NOT NULL UNIQUE,
    capturer_id      INTEGER NOT NULL,      -- capturers.rid of the last writer (no FK: retention)
    community_id     TEXT    NOT NULL,
    proto            TEXT    NOT NULL,
    proto_num        INTEGER NOT NULL,
    src_ip           TEXT    NOT NULL,
    src_addr         BLOB,                  -- 16 bytes; NULL when src_ip is not an address
    src_port         INTEGER NOT NULL,
    dst_ip           TEXT    NOT NULL,
    dst_addr         BLOB,
    dst_port         INTEGER NOT NULL,
    vlan             INTEGER NOT NULL,
    first_seen       INTEGER NOT NULL,      -- Unix ns, capture time
    last_seen        INTEGER NOT NULL,      -- Unix ns, capture time
    packets_sent     INTEGER NOT NULL,
    bytes_sent       INTEGER NOT NULL,
    packets_received INTEGER NOT NULL,
    bytes_received   INTEGER NOT NULL,
    packets          INTEGER NOT NULL,      -- packets_sent + packets_received (order by packets)
    bytes            INTEGER NOT NULL,      -- bytes_sent + bytes_received (order by bytes)
    tcp_flags        TEXT    NOT NULL,
    history          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    direction        TEXT    NOT NULL,
    end_reason       TEXT    NOT NULL       -- '' while active
);
-- Orders (each index ends in rid implicitly: the cursor's tie-breaker) and
-- since/until and retention.
CREATE INDEX flows_last_seen  ON flows (last_seen);
CREATE INDEX flows_first_seen ON flows (first_seen);
CREATE INDEX flows_bytes      ON flows (bytes);
CREATE INDEX flows_packets    ON flows (packets);
-- Filters on either side: ip and cidr (blob ranges), port.
CREATE INDEX flows_src_addr   ON flows (src_addr);
CREATE INDEX flows_dst_addr   ON flows (dst_addr);
CREATE INDEX flows_src_port   ON flows (src_port);
CREATE INDEX flows_dst_port   ON flows (dst_port);
-- Low-cardinality filters. Not paired with last_seen: an index holding a
-- column that every record changes is rewritten on every update.
CREATE INDEX flows_state      ON flows (state);
CREATE INDEX flows_proto      ON flows (proto_num);
CREATE INDEX flows_direction  ON flows (direction);

-- flow_windows: per-flow counters per aggregation window (the original
-- --aggregation-window). Written by triggers on flows that Open creates
-- when the window is on (windows.go); see the package documentation for how
-- deltas are derived from cumulative records.
CREATE TABLE flow_windows (
    flow_rid         INTEGER NOT NULL REFERENCES flows (rid) ON DELETE CASCADE,
    start            INTEGER NOT NULL,      -- Unix s, capture time, a multiple of width
    width            INTEGER NOT NULL,      -- seconds
    packets_sent     INTEGER NOT NULL,
    bytes_sent       INTEGER NOT NULL,
    packets_received INTEGER NOT NULL,
    bytes_received   INTEGER NOT NULL,
    PRIMARY KEY (flow_rid, start)
) WITHOUT ROWID;
CREATE INDEX flow_windows_start ON flow_windows (start);

-- packets: sampled packet records (the original /api/history).
CREATE TABLE packets (
    rid      INTEGER PRIMARY KEY,
    ts       INTEGER NOT NULL,              -- Unix ms, capture time
    src_ip   TEXT    NOT NULL,
    dst_ip   TEXT    NOT NULL,
    src_port INTEGER NOT NULL,
    dst_port INTEGER NOT NULL,
    protocol TEXT    NOT NULL,
    length   INTEGER NOT NULL,
    flow_id  TEXT    NOT NULL
);
CREATE INDEX packets_ts ON packets (ts);

-- capture_stats: the cumulative capture statistics over time, at most one
-- row per capturer instance per second (the last batch of that second wins).
CREATE TABLE capture_stats (
    ts                INTEGER NOT NULL,     -- Unix s, server clock at receipt
    capturer_id       INTEGER NOT NULL,     -- capturers.rid (no FK: retention)
    packets           INTEGER NOT NULL,
    bytes             INTEGER NOT NULL,
    kernel_received   INTEGER NOT NULL,
    kernel_drops      INTEGER NOT NULL,
    flow_packets      INTEGER NOT NULL,
    non_ip            INTEGER NOT NULL,
    decode_errors     TEXT    NOT NULL,     -- JSON object reason -> count
    filtered          INTEGER NOT NULL,
    flows             INTEGER NOT NULL,
    active_flows      INTEGER NOT NULL,
    evictions         INTEGER NOT NULL,
    fragments_pending INTEGER NOT NULL,
    samples_dropped   INTEGER NOT NULL,     -- the IPC client's cumulative drop counts
    batches_coalesced INTEGER NOT NULL,
    updates_dropped   INTEGER NOT NULL,
    ended_dropped     INTEGER NOT NULL,
    ended_packets     INTEGER NOT NULL,
    ended_bytes       INTEGER NOT NULL,
    PRIMARY KEY (ts, capturer_id)
) WITHOUT ROWID;
