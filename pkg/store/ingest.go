package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Capturer describes one capturer instance, from its IPC hello.
type Capturer struct {
	// InstanceID identifies one run of a capturer. Required.
	InstanceID string `json:"instance_id"`
	Hostname   string `json:"hostname"`
	Software   string `json:"software"`
	Interface  string `json:"interface"`
	LinkType   uint16 `json:"link_type"`
	Filter     string `json:"filter"`
	// StartTime is when the capture started (capturer's clock); zero if
	// unknown.
	StartTime time.Time `json:"start_time"`

	// Set by Capturers, ignored by ApplyBatch: when the store received the
	// instance's first and last batch, and the last seq applied.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	LastSeq   uint64    `json:"last_seq"`
}

// DropStats are the IPC client's cumulative drop counters (ipc.DropStats).
type DropStats struct {
	SamplesDropped   uint64 `json:"samples_dropped"`
	BatchesCoalesced uint64 `json:"batches_coalesced"`
	UpdatesDropped   uint64 `json:"updates_dropped"`
	EndedDropped     uint64 `json:"ended_dropped"`
	EndedPackets     uint64 `json:"ended_packets"`
	EndedBytes       uint64 `json:"ended_bytes"`
}

// Batch is what one IPC batch carries (ipc.Batch, converted by the ingest
// layer so that this package does not import ipc). ApplyBatch does not keep
// the slices.
type Batch struct {
	// Seq numbers the batches of one capturer instance, from 1, increasing;
	// gaps are allowed.
	Seq uint64
	// Flows are records of flows still active, with cumulative counters.
	Flows []record.Flow
	// Ended are final records; one supersedes a record with the same ID in
	// Flows.
	Ended []record.Flow
	// Samples are sampled packet records.
	Samples []record.PacketSample
	// Stats are the capture's cumulative statistics.
	Stats record.CaptureStats
	// Dropped are the IPC client's cumulative drop counters.
	Dropped DropStats
	// ReceivedAt is when the API server received the batch; zero means
	// Options.Now(). It times capture_stats rows and the capturer's
	// last_seen.
	ReceivedAt time.Time
}

// ApplyBatch commits b from capturer instance c.InstanceID in one
// transaction, together with the instance's new last seq. If b.Seq is not
// greater than the last seq already committed for the instance, b is a
// duplicate: nothing changes and applied is false. c's other fields update
// the instance's row.
//
// On error nothing is committed; the error wraps ErrFull or ErrReadOnly when
// the file cannot grow or be written, and ErrInvalid for a bad batch.
func (db *DB) ApplyBatch(ctx context.Context, c Capturer, b *Batch) (applied bool, err error) {
	if err := validateBatch(c, b); err != nil {
		return false, wrap("write batch", err)
	}
	now := b.ReceivedAt
	if now.IsZero() {
		now = db.opts.Now()
	}
	defer func() {
		if errors.Is(err, ErrFull) {
			// The size cap (or the disk) refused the batch: have the
			// background retention make room now, not at its next tick.
			db.wakeRetention()
		}
	}()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return false, wrap("write batch", err)
	}
	defer tx.Rollback()
	applied, err = db.applyBatch(ctx, tx, c, b, now)
	if err != nil || !applied {
		return false, wrap("write batch", err) // rolled back
	}
	if err := tx.Commit(); err != nil {
		return false, wrap("write batch", fmt.Errorf("commit: %w", err))
	}
	return true, nil
}

func validateBatch(c Capturer, b *Batch) error {
	if c.InstanceID == "" {
		return fmt.Errorf("no capturer instance id: %w", ErrInvalid)
	}
	if b.Seq == 0 || b.Seq > math.MaxInt64 {
		return fmt.Errorf("seq %d out of range: %w", b.Seq, ErrInvalid)
	}
	for _, fs := range [][]record.Flow{b.Flows, b.Ended} {
		for i := range fs {
			if fs[i].ID == "" {
				return fmt.Errorf("flow without id: %w", ErrInvalid)
			}
		}
	}
	return nil
}

// applyBatch writes b in tx; applied is false for a duplicate.
func (db *DB) applyBatch(ctx context.Context, tx *sql.Tx, c Capturer, b *Batch, now time.Time) (applied bool, err error) {
	// The statements run with a context that is never cancelled: given a
	// cancellable one, the driver starts a goroutine per statement to
	// interrupt it (modernc.org/sqlite's interruptOnDone), which costs more
	// than a flow's update. The batch still stops soon after ctx ends:
	// between chunks of records, and at the latest at the commit, which
	// database/sql refuses (the transaction is bound to ctx).
	done := ctx
	ctx = context.WithoutCancel(ctx)
	st := db.stmts.in(ctx, tx) // closed with tx

	// Dedup first, so that a duplicate costs one statement.
	res, err := st.advanceSeq.ExecContext(ctx, c.InstanceID, int64(b.Seq), now.UnixNano())
	if err != nil {
		return false, fmt.Errorf("advance seq: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, err
	} else if n == 0 {
		return false, nil // seq <= last_seq: applied before
	}

	var capRID int64
	if err := st.upsertCapturer.QueryRowContext(ctx,
		c.InstanceID, c.Hostname, c.Software, c.Interface, int64(c.LinkType), c.Filter,
		unixNano(c.StartTime), now.UnixNano(),
	).Scan(&capRID); err != nil {
		return false, fmt.Errorf("upsert capturer: %w", err)
	}

	var ended map[string]struct{}
	if len(b.Ended) > 0 && len(b.Flows) > 0 {
		ended = make(map[string]struct{}, len(b.Ended))
		for i := range b.Ended {
			ended[b.Ended[i].ID] = struct{}{}
		}
	}
	for i := range b.Flows {
		if _, ok := ended[b.Flows[i].ID]; ok {
			continue // superseded by its final record in this batch
		}
		if i%checkEvery == 0 && done.Err() != nil {
			return false, context.Cause(done)
		}
		if err := applyFlow(ctx, st, capRID, &b.Flows[i]); err != nil {
			return false, err
		}
	}
	for i := range b.Ended {
		if i%checkEvery == 0 && done.Err() != nil {
			return false, context.Cause(done)
		}
		if err := applyFlow(ctx, st, capRID, &b.Ended[i]); err != nil {
			return false, err
		}
	}
	if done.Err() != nil {
		return false, context.Cause(done)
	}
	if err := insertSamples(ctx, st, b.Samples); err != nil {
		return false, err
	}
	if err := upsertStats(ctx, st, capRID, now, &b.Stats, &b.Dropped); err != nil {
		return false, err
	}

	if db.highWater > 0 {
		var pages, free int64
		if err := st.pageCount.QueryRowContext(ctx).Scan(&pages, &free); err != nil {
			return false, fmt.Errorf("read page count: %w", err)
		}
		if (pages-free)*db.pageSize > db.highWater {
			db.wakeRetention()
		}
	}
	return true, nil
}

// wakeRetention wakes the background retention; it never waits for it.
func (db *DB) wakeRetention() {
	select {
	case db.pressure <- struct{}{}:
	default:
	}
}

// applyFlow upserts one flow record: an UPDATE by id of the columns a
// later record changes, and an INSERT when no row was there. (INSERT … ON
// CONFLICT DO UPDATE costs a statement journal per row; this does not.)
// With windows on, the triggers of flows (migrations/0001_init.sql) add the
// record's delta to its window.
func applyFlow(ctx context.Context, st *txStmts, capRID int64, f *record.Flow) error {
	ps, bs, pr, br := i64(f.PacketsSent), i64(f.BytesSent), i64(f.PacketsReceived), i64(f.BytesReceived)
	last := unixNano(f.LastSeen.Time)
	res, err := st.updateFlow.ExecContext(ctx, capRID, last, ps, bs, pr, br, sat(ps, pr), sat(bs, br),
		f.TCPFlags, f.History, f.State, f.EndReason, f.ID)
	if err != nil {
		return fmt.Errorf("update flow %s: %w", f.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n > 0 {
		return nil
	}
	if _, err := st.insertFlow.ExecContext(ctx,
		f.ID, capRID, f.CommunityID, f.Proto, int64(f.ProtoNum),
		f.SrcIP, addrBlob(f.SrcIP), int64(f.SrcPort), f.DstIP, addrBlob(f.DstIP), int64(f.DstPort), int64(f.VLAN),
		unixNano(f.FirstSeen.Time), last, ps, bs, pr, br, sat(ps, pr), sat(bs, br),
		f.TCPFlags, f.History, f.State, f.Direction, f.EndReason,
	); err != nil {
		return fmt.Errorf("insert flow %s: %w", f.ID, err)
	}
	return nil
}

// checkEvery is how many records applyBatch writes between two looks at
// its context.
const checkEvery = 256

// samplesPerStmt is the number of rows of one multi-row sample insert: fewer
// statements, 8 × 64 = 512 parameters (SQLite allows 32766).
const samplesPerStmt = 64

func insertSamples(ctx context.Context, st *txStmts, ss []record.PacketSample) error {
	for len(ss) > 0 {
		stmt, n := st.insertSample, 1
		if len(ss) >= samplesPerStmt {
			stmt, n = st.insertSamples, samplesPerStmt
		}
		args := make([]any, 0, 8*n)
		for i := range ss[:n] {
			s := &ss[i]
			args = append(args, s.Timestamp, s.SrcIP, s.DstIP, int64(s.SrcPort), int64(s.DstPort),
				s.Protocol, int64(s.Length), s.FlowID)
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert samples: %w", err)
		}
		ss = ss[n:]
	}
	return nil
}

func upsertStats(ctx context.Context, st *txStmts, capRID int64, now time.Time, s *record.CaptureStats, d *DropStats) error {
	de := []byte("{}")
	if len(s.DecodeErrors) > 0 {
		var err error
		if de, err = json.Marshal(s.DecodeErrors); err != nil {
			return fmt.Errorf("encode decode_errors: %w", err)
		}
	}
	if _, err := st.upsertStats.ExecContext(ctx, now.Unix(), capRID,
		i64(s.Packets), i64(s.Bytes), i64(s.KernelReceived), i64(s.KernelDrops),
		i64(s.FlowPackets), i64(s.NonIP), string(de), i64(s.Filtered), i64(s.Flows),
		i64(s.ActiveFlows), i64(s.Evictions), i64(s.FragmentsPending),
		i64(d.SamplesDropped), i64(d.BatchesCoalesced), i64(d.UpdatesDropped),
		i64(d.EndedDropped), i64(d.EndedPackets), i64(d.EndedBytes),
	); err != nil {
		return fmt.Errorf("upsert capture stats: %w", err)
	}
	return nil
}

// LastSeq returns the highest seq committed for instanceID, 0 if none: the
// value the IPC server sends in its hello_ack.
func (db *DB) LastSeq(ctx context.Context, instanceID string) (uint64, error) {
	var seq int64
	err := db.r.QueryRowContext(ctx, "SELECT last_seq FROM applied_batches WHERE instance_id = ?", instanceID).Scan(&seq)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("read last seq", err)
	}
	return uint64(seq), nil
}

// writeStmts are the writer's statements, prepared once at Open.
type writeStmts struct {
	all []*sql.Stmt

	advanceSeq, upsertCapturer, updateFlow, insertFlow, insertSample, insertSamples, upsertStats, pageCount *sql.Stmt
}

// The SQL of a flow record. The update sets only the columns a flow's later
// records change: SQLite rewrites the index entries of every column in the
// SET list, and the 5-tuple, first_seen, vlan, community id and direction
// are fixed by the flow's id (a hash of its key and first packet).
const (
	flowUpdateSQL = `UPDATE flows SET capturer_id = ?, last_seen = ?,
	packets_sent = ?, bytes_sent = ?, packets_received = ?, bytes_received = ?, packets = ?, bytes = ?,
	tcp_flags = ?, history = ?, state = ?, end_reason = ?
	WHERE id = ?`
	flowInsertSQL = `INSERT INTO flows (id, capturer_id, community_id, proto, proto_num,
	src_ip, src_addr, src_port, dst_ip, dst_addr, dst_port, vlan, first_seen, last_seen,
	packets_sent, bytes_sent, packets_received, bytes_received, packets, bytes,
	tcp_flags, history, state, direction, end_reason)
	VALUES (?,?,?,?,?, ?,?,?,?,?,?,?,?,?, ?,?,?,?,?,?, ?,?,?,?,?)`
)

func (s *writeStmts) prepare(ctx context.Context, w *sql.DB) error {
	p := func(dst **sql.Stmt, q string) error {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %.40q…: %w", q, err)
		}
		*dst = st
		s.all = append(s.all, st)
		return nil
	}
	sampleRow := "(?,?,?,?,?,?,?,?)"
	const sampleInsert = "INSERT INTO packets (ts, src_ip, dst_ip, src_port, dst_port, protocol, length, flow_id) VALUES "
	for _, x := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.advanceSeq, `INSERT INTO applied_batches (instance_id, last_seq, applied_at) VALUES (?, ?, ?)
			ON CONFLICT (instance_id) DO UPDATE SET last_seq = excluded.last_seq, applied_at = excluded.applied_at
			WHERE excluded.last_seq > applied_batches.last_seq`},
		{&s.upsertCapturer, `INSERT INTO capturers (instance_id, hostname, software, interface, link_type, filter,
			start_time, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
			ON CONFLICT (instance_id) DO UPDATE SET hostname = excluded.hostname, software = excluded.software,
			interface = excluded.interface, link_type = excluded.link_type, filter = excluded.filter,
			start_time = excluded.start_time, last_seen = excluded.last_seen
			RETURNING rid`},
		{&s.updateFlow, flowUpdateSQL},
		{&s.insertFlow, flowInsertSQL},
		{&s.insertSample, sampleInsert + sampleRow},
		{&s.insertSamples, sampleInsert + strings.Repeat(sampleRow+",", samplesPerStmt-1) + sampleRow},
		{&s.upsertStats, `INSERT INTO capture_stats (ts, capturer_id, packets, bytes, kernel_received,
			kernel_drops, flow_packets, non_ip, decode_errors, filtered, flows, active_flows, evictions,
			fragments_pending, samples_dropped, batches_coalesced, updates_dropped, ended_dropped,
			ended_packets, ended_bytes) VALUES (?,?,?,?,?, ?,?,?,?,?, ?,?,?,?,?, ?,?,?,?,?)
			ON CONFLICT (ts, capturer_id) DO UPDATE SET packets = excluded.packets, bytes = excluded.bytes,
			kernel_received = excluded.kernel_received, kernel_drops = excluded.kernel_drops,
			flow_packets = excluded.flow_packets, non_ip = excluded.non_ip,
			decode_errors = excluded.decode_errors, filtered = excluded.filtered, flows = excluded.flows,
			active_flows = excluded.active_flows, evictions = excluded.evictions,
			fragments_pending = excluded.fragments_pending, samples_dropped = excluded.samples_dropped,
			batches_coalesced = excluded.batches_coalesced, updates_dropped = excluded.updates_dropped,
			ended_dropped = excluded.ended_dropped, ended_packets = excluded.ended_packets,
			ended_bytes = excluded.ended_bytes`},
		{&s.pageCount, "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count())"},
	} {
		if err := p(x.dst, x.q); err != nil {
			return err
		}
	}
	return nil
}

func (s *writeStmts) close() {
	for _, st := range s.all {
		st.Close()
	}
	s.all = nil
}

// txStmts are the writer's statements bound to one transaction; they close
// with it.
type txStmts struct {
	advanceSeq, upsertCapturer, updateFlow, insertFlow, insertSample, insertSamples, upsertStats, pageCount *sql.Stmt
}

// in binds the prepared statements to tx. The writer has one connection,
// so database/sql reuses each statement's preparation on it.
func (s *writeStmts) in(ctx context.Context, tx *sql.Tx) *txStmts {
	t := &txStmts{}
	bind := func(st *sql.Stmt) *sql.Stmt {
		if st == nil {
			return nil
		}
		return tx.StmtContext(ctx, st)
	}
	t.advanceSeq = bind(s.advanceSeq)
	t.upsertCapturer = bind(s.upsertCapturer)
	t.updateFlow = bind(s.updateFlow)
	t.insertFlow = bind(s.insertFlow)
	t.insertSample = bind(s.insertSample)
	t.insertSamples = bind(s.insertSamples)
	t.upsertStats = bind(s.upsertStats)
	t.pageCount = bind(s.pageCount)
	return t
}

// i64 converts a counter for SQLite, saturating at 2^63-1.
func i64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// sat adds two non-negative counters, saturating.
func sat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// unixNano returns t in Unix nanoseconds, 0 for the zero time ("unknown").
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano, in UTC.
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// addrBlob returns the 16-byte form of a textual address (IPv4 as
// IPv4-mapped IPv6), or nil when s is not an address.
func addrBlob(s string) []byte {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil
	}
	b := a.As16()
	return b[:]
}
