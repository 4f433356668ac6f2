// Package store keeps the API server's history in SQLite (modernc.org/sqlite,
// pure Go): the flow records, per-flow counters per time window, sampled
// packet records, capture statistics over time, the capturers seen and the
// IPC dedup state.
//
// It imports only database/sql, the SQLite driver and pkg/record: never ipc,
// capture, decode, flow or capfilter (LAYOUT.md). The ingest layer converts an
// ipc.Batch into a [Batch].
//
// # Connections
//
// A [DB] holds one writer connection (every write goes through it, so writes
// never wait on each other's locks) and a small pool of read-only connections
// (mode=ro). The pragmas are set in the DSN: journal_mode(WAL) so readers never
// block the writer, synchronous(NORMAL) (a commit survives a crash of the
// process, as TestDB_CrashConsistency shows with SIGKILL, but a power loss or
// kernel crash may undo the last commits, never corrupt the file; FULL would
// cost an fsync per batch), busy_timeout(5000), foreign_keys(ON) and
// auto_vacuum(INCREMENTAL), which must be set before the first table exists
// (on an existing file Open only checks it). Open checks that the journal
// mode really is WAL.
//
// # Schema
//
// The schema is in embedded, numbered migrations (migrations/0001_init.sql,
// …), each applied in its own transaction and recorded in schema_migrations.
// A migration is never edited once shipped. Open refuses a database whose
// schema is newer than this binary.
//
// # Batches
//
// One batch is one transaction: the flows, windows, samples and statistics it
// carries, what it adds to the traffic totals and the new last seq of its
// capturer instance (applied_batches) commit together or not at all. A batch
// whose seq is not greater than the instance's last seq is a duplicate and
// changes nothing, so a batch resent after a lost acknowledgement is applied
// exactly once, across restarts.
//
// Flow records carry cumulative counters, so applying one is an upsert by
// flow id that overwrites the counters. A record in Batch.Ended is final: it
// supersedes a record with the same id in Batch.Flows and sets end_reason.
// The batch is written through the driver's own connection, a chunk of
// records at a time: one statement reads the chunk's stored rows, then each
// record updates its row by rid (only the columns it changes) or inserts it
// (writer.go explains why, with measurements).
//
// # Traffic totals
//
// The traffic table (migrations/0002_traffic.sql) holds packets and bytes by
// protocol and flow direction: what every flow record committed grew its
// flow's counters by, over the stored row it replaced (the whole counters
// for a new flow, or for one whose counters went down: a flow id reused by
// another capture). ApplyBatch adds a batch's growth in its transaction, so
// the totals equal the sum over the flows stored (plus those retention
// deleted), count a resent batch once, never go down, and survive restarts;
// DB.Traffic serves them from memory for /metrics. A flow that retention
// deletes while it is still active (end_reason empty) leaves its counters in
// flows_retired: if it sends another record, which inserts it again with its
// whole cumulative counters, only the growth since is added. Such a row is
// forgotten once the flow comes back, or after the capturers' retention
// (seven days at least): a flow silent for that long is not coming back.
//
// # Windows
//
// With Options.AggregationWindow = W > 0, each flow also gets one row per
// W-second window of capture time in flow_windows, holding the packets and
// bytes of each direction counted in that window. Records carry cumulative
// counters, so the store derives the window counts as deltas: when a record
// arrives, the delta from the counters stored for the flow (the previous
// record; zero for a new flow) is added to the window that holds the record's
// last_seen. The flows row is the "last seen cumulative counters" the next
// delta is taken from. Consequences:
//   - The sum of a flow's windows equals its cumulative counters, as long as
//     no counter went down and retention deleted none of its windows.
//   - Traffic is attributed to the window of the record that reports it, so
//     with a flush interval F the split at a window boundary may be off by up
//     to F (1 s by default); a flow first reported long after it began (an
//     imported capture file) lands in the window of its first record.
//   - A counter that goes down (a flow id reused by another capture) counts
//     zero, never negative.
//   - A flow whose row retention already deleted starts again from zero, so
//     its next window counts its whole cumulative counters again.
//
// # Queries
//
// Every query is bounded by a limit, and flow listings page by key: a cursor
// holds the sort key and the stable rid of the last row returned, so fetching
// a page costs the same wherever it is. A walk sees every row that exists
// from its start to its end exactly once, and rows inserted during the walk
// at most once, provided the sort key of a row does not change during the
// walk. first_seen never changes; last_seen, bytes and packets grow while a
// flow is active, and a row whose key moves across the cursor during a walk
// can be missed or seen twice. Each page is its own short read transaction,
// because a long reader keeps the WAL from being checkpointed.
//
// A filtered page first reads 4096 rows in sort order and keeps the matches
// (cheap when the filter is common, like the container's own address). When
// they are too few, the matches found predict how many more rows the
// ordered scan needs, and each filter's index says how many matches it has
// (counted up to 16384): the page reads on in sort order (at most 65536
// rows in all) when that is cheaper, and otherwise reads and sorts the
// matches of the rarest filter (cheap when the filter is rare; reading a
// match through an index costs about four rows of the ordered scan). On a
// million flows, a port in 2 % of them took 65 ms through its index and
// takes 5 ms reading on in order. SQLite's own statistics cannot make that
// choice: they know averages, not that one address is in every flow.
//
// # Retention and size
//
// Retain deletes rows older than Options.Retention (capture time; capturers,
// their dedup state and retired flows' counters after at least seven days
// without contact) and, when
// the live pages of the file pass 85 % of its cap, the oldest rows of every
// table until they are under 70 %. Deletes run in transactions of at most
// 1000 rows (about 2 ms), yielding the writer connection between them, so
// ingest never waits long; the size bound uses 5000 (about 10 ms, half an
// ingest batch), or it would get a tenth of the writer and fall behind an
// ingest of 100k rows/s. Freed pages are reused by later inserts, so the file stops
// growing; PRAGMA incremental_vacuum returns to the file system what is free
// beyond a reserve that ingest would fill again (the 15 % between the marks,
// or 1/8 of the file without a size bound).
//
// The file is also capped: max_page_count stops the main file at MaxSize
// minus the WAL budget (MaxSize/8, between 2 and 64 MiB), and a write that
// would go beyond fails with [ErrFull] rather than grow the file (the ingest
// retries it once Retain made room); journal_size_limit, a checkpoint every
// half budget and a truncating checkpoint in Retain keep the WAL near its
// budget. Between checkpoints the WAL may pass it by about one batch's
// pages: that is the slack over MaxSize. See [Options.MaxSize].
//
// # Failure
//
// A write that fails (a full disk, a read-only file, the size cap) rolls its
// transaction back and returns an error that wraps [ErrFull] or [ErrReadOnly]
// when it is one of those; the database stays consistent and readable, and
// the same batch can be applied again later.
package store
