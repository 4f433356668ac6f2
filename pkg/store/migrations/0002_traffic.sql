-- 0002_traffic: exact traffic totals by protocol and flow direction, kept in
-- the transaction of every batch (lightshark_traffic_packets_total and
-- lightshark_traffic_bytes_total). Never edit this file once shipped.

-- traffic: what the flow records' cumulative counters grew by, summed by
-- protocol and direction, both flow directions together. ApplyBatch adds
-- each record's growth over the row it replaces (ingest.go), so a total
-- equals the sum of packets and bytes over the flows stored, plus those of
-- flows retention has deleted since. The labels are bounded: proto is
-- record.ProtoName(proto_num) ("tcp", "udp", "icmp", "icmpv6", "sctp" or
-- the number, so at most 256 values) and direction one of inbound,
-- outbound, internal, unknown.
CREATE TABLE traffic (
    proto     TEXT    NOT NULL,
    direction TEXT    NOT NULL,
    packets   INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    PRIMARY KEY (proto, direction)
) WITHOUT ROWID;

-- flows_retired: the counters of flows that retention deleted while they
-- were still active (end_reason ''), so that a later record of the flow,
-- which inserts it again with its whole cumulative counters, adds only what
-- they grew by since. A row is removed when its flow comes back, or by
-- retention once it is as old as the capturers' dedup state.
CREATE TABLE flows_retired (
    id         TEXT    PRIMARY KEY,
    packets    INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    retired_at INTEGER NOT NULL             -- Unix ns, server clock
) WITHOUT ROWID;
CREATE INDEX flows_retired_at ON flows_retired (retired_at);

-- The totals start at the flows already stored: backfillTraffic
-- (migrate.go) sums them in the same transaction, streaming the rows (a
-- GROUP BY here sorted every flow in memory: 67 MiB for a million rows).
