package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"net/netip"
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
// transaction, together with the instance's new last seq and what its flow
// records add to the traffic totals (see Traffic). If b.Seq is not greater
// than the last seq already committed for the instance, b is a duplicate:
// nothing changes and applied is false. c's other fields update the
// instance's row.
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
	// The batch goes through the driver's connection itself (see
	// batchWriter): database/sql costs about 20 allocations per flow
	// record, which the API server's small heap pays for in GC time.
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return false, wrap("write batch", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		var err error
		applied, err = db.applyRaw(ctx, dc, c, b, now)
		return err
	})
	if err != nil {
		return false, wrap("write batch", err)
	}
	return applied, nil
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

// applyRaw runs b's transaction on the writer's driver connection dc and,
// once it committed, adds its traffic to the totals in memory.
func (db *DB) applyRaw(ctx context.Context, dc any, c Capturer, b *Batch, now time.Time) (bool, error) {
	conn, ok := dc.(rawConn)
	if !ok {
		return false, fmt.Errorf("driver connection %T cannot prepare statements or begin transactions", dc)
	}
	w := db.writer
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start(ctx, conn)
	defer w.finish()
	tx, err := conn.BeginTx(ctx, driver.TxOptions{})
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Best effort: a failed write may have rolled the
			// transaction back already.
			_ = tx.Rollback()
		}
	}()
	applied, err := db.applyBatch(ctx, w, c, b, now)
	if err != nil || !applied {
		return false, err // rolled back
	}
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	committed = true
	db.traffic.commit(&w.traffic)
	return true, nil
}

// applyBatch writes b in the writer's transaction; applied is false for a
// duplicate.
func (db *DB) applyBatch(ctx context.Context, w *batchWriter, c Capturer, b *Batch, now time.Time) (applied bool, err error) {
	// The statements run with a context that is never cancelled (w.ctx):
	// given a cancellable one, the driver starts a goroutine per statement
	// to interrupt it (modernc.org/sqlite's interruptOnDone), which costs
	// more than a flow's update. The batch still stops soon after ctx ends:
	// between chunks of records, and at the latest before the commit.
	done := ctx

	// Dedup first, so that a duplicate costs one statement.
	a := w.args(3)
	a[0].Value, a[1].Value, a[2].Value = c.InstanceID, int64(b.Seq), now.UnixNano()
	res, err := w.exec(sAdvanceSeq, a)
	if err != nil {
		return false, fmt.Errorf("advance seq: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, err
	} else if n == 0 {
		return false, nil // seq <= last_seq: applied before
	}

	a = w.args(8)
	a[0].Value, a[1].Value, a[2].Value, a[3].Value = c.InstanceID, c.Hostname, c.Software, c.Interface
	a[4].Value, a[5].Value, a[6].Value, a[7].Value = int64(c.LinkType), c.Filter, unixNano(c.StartTime), now.UnixNano()
	capRID, err := w.queryInt(sUpsertCapturer, a)
	if err != nil {
		return false, fmt.Errorf("upsert capturer: %w", err)
	}

	if err := w.applyFlows(done, capRID, b); err != nil {
		return false, err
	}
	if done.Err() != nil {
		return false, context.Cause(done)
	}
	if err := w.insertSamples(b.Samples); err != nil {
		return false, err
	}
	if err := w.upsertStats(capRID, now, &b.Stats, &b.Dropped); err != nil {
		return false, err
	}
	if err := db.traffic.write(w); err != nil {
		return false, err
	}

	if db.highWater > 0 {
		pages, err := w.queryInt(sPageCount, nil)
		if err != nil {
			return false, fmt.Errorf("read page count: %w", err)
		}
		if pages*db.pageSize > db.highWater {
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
