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

-- The totals start at the flows already stored. TOTAL (a float, exact
-- below 2^53) rather than SUM, which fails on an int64 overflow; the
-- counters saturate at 2^63-1 as the flows' do.
INSERT INTO traffic (proto, direction, packets, bytes)
SELECT proto, direction,
       CASE WHEN p >= 9.2e18 THEN 9223372036854775807 ELSE CAST(p AS INTEGER) END,
       CASE WHEN b >= 9.2e18 THEN 9223372036854775807 ELSE CAST(b AS INTEGER) END
FROM (
    SELECT CASE proto_num WHEN 1 THEN 'icmp' WHEN 6 THEN 'tcp' WHEN 17 THEN 'udp'
               WHEN 58 THEN 'icmpv6' WHEN 132 THEN 'sctp' ELSE CAST(proto_num AS TEXT) END AS proto,
           CASE WHEN direction IN ('inbound', 'outbound', 'internal') THEN direction ELSE 'unknown' END AS direction,
           TOTAL(packets) AS p, TOTAL(bytes) AS b
    FROM flows GROUP BY 1, 2
)
WHERE p > 0 OR b > 0;
