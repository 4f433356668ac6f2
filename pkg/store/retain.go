package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
)

const (
	// deleteBatch is the most rows one retention transaction deletes: the
	// writer is busy for about two milliseconds at a time.
	deleteBatch = 1000
	// pressureBatch replaces it when the size bound deletes: about 10 ms,
	// half an ingest batch, so that the retention gets a third of the
	// writer's time while ingest goes on (with 1000 it got a tenth, and fell
	// behind an ingest at 100k rows/s).
	pressureBatch = 5000
	// vacuumStep is the most pages one incremental_vacuum moves.
	vacuumStep = 1024
	// minCapturerRetention keeps capturers and their dedup state at least
	// this long after their last batch, so that a capturer cut off for a
	// while does not get its pending batches applied twice.
	minCapturerRetention = 7 * 24 * time.Hour
	// maxSizeRounds bounds the delete-oldest rounds of one Retain.
	maxSizeRounds = 64
	// optimizeEvery spaces the PRAGMA optimize runs of Retain.
	optimizeEvery = 10 * time.Minute
)

// RetainResult reports what one Retain did.
type RetainResult struct {
	// Rows deleted, per table (cascaded window rows are not counted).
	Flows, Windows, Packets, Stats, Capturers int64
	// SizeCutoff is the capture time before which the size bound deleted
	// rows, zero if it did not have to.
	SizeCutoff time.Time
	// VacuumedPages are the free pages returned to the file system.
	VacuumedPages int64
	// Size is the database's size after the step (main file + WAL).
	Size int64
}

// Retain deletes what Options.Retention and Options.MaxSize do not keep,
// in transactions of at most 1000 rows (5000 when the size bound deletes)
// that yield the writer between them (see the package documentation), then
// shrinks the file. now is the
// current time; rows are aged by capture time against it. One Retain runs
// at a time; a call while another runs waits for it.
func (db *DB) Retain(ctx context.Context, now time.Time) (RetainResult, error) {
	db.retainMu.Lock()
	defer db.retainMu.Unlock()
	var res RetainResult
	if db.opts.Retention > 0 {
		if err := db.deleteBefore(ctx, now.Add(-db.opts.Retention), now, deleteBatch, &res); err != nil {
			return res, wrap("retain", err)
		}
	}
	capCut := now.Add(-max(db.opts.Retention, minCapturerRetention))
	for _, q := range []struct {
		sql string
		n   *int64
	}{
		{"DELETE FROM capturers WHERE rid IN (SELECT rid FROM capturers WHERE last_seen < ? LIMIT ?)", &res.Capturers},
		{"DELETE FROM applied_batches WHERE instance_id IN (SELECT instance_id FROM applied_batches WHERE applied_at < ? LIMIT ?)", nil},
		// A retired flow not back after this long has ended unseen (its
		// capturer died, or dropped its final record).
		{"DELETE FROM flows_retired WHERE id IN (SELECT id FROM flows_retired WHERE retired_at < ? LIMIT ?)", nil},
	} {
		if _, err := db.deleteLoop(ctx, q.sql, capCut.UnixNano(), deleteBatch, q.n); err != nil {
			return res, wrap("retain", err)
		}
	}
	if db.highWater > 0 {
		if err := db.enforceSize(ctx, now, &res); err != nil {
			return res, wrap("retain", err)
		}
	}
	if err := db.shrink(ctx, &res); err != nil {
		return res, wrap("retain", err)
	}
	if now := time.Now(); now.Sub(db.optimized) > optimizeEvery {
		// Refresh the planner's statistics (reads at most analysis_limit
		// rows per index).
		if _, err := db.w.ExecContext(ctx, "PRAGMA optimize"); err != nil {
			return res, wrap("retain: optimize", err)
		}
		db.optimized = now
	}
	size, err := db.Size(ctx)
	res.Size = size
	return res, err
}

// deleteBefore deletes the rows of every table older than cut (capture
// time; capture_stats by receive time), batch rows per transaction. now
// (server clock) times the flows it retires (retireFlows).
func (db *DB) deleteBefore(ctx context.Context, cut, now time.Time, batch int64, res *RetainResult) error {
	sec := cut.Unix()
	for _, q := range []struct {
		sql string
		arg int64
		n   *int64
	}{
		// Windows first: a flow's windows start before its last_seen, so
		// the flows' cascade then finds nothing left to delete.
		{"DELETE FROM flow_windows WHERE (flow_rid, start) IN (SELECT flow_rid, start FROM flow_windows WHERE start < ? LIMIT ?)", sec, &res.Windows},
		{"DELETE FROM packets WHERE rid IN (SELECT rid FROM packets WHERE ts < ? LIMIT ?)", cut.UnixMilli(), &res.Packets},
		{"DELETE FROM capture_stats WHERE (ts, capturer_id) IN (SELECT ts, capturer_id FROM capture_stats WHERE ts < ? LIMIT ?)", sec, &res.Stats},
	} {
		if _, err := db.deleteLoop(ctx, q.sql, q.arg, batch, q.n); err != nil {
			return err
		}
	}
	for {
		n, err := db.retireFlows(ctx, cut.UnixNano(), now.UnixNano(), batch)
		res.Flows += n
		if err != nil || n < batch {
			return err
		}
		runtime.Gosched() // a waiting ApplyBatch gets the writer first
	}
}

// retireFlows deletes up to batch flows last seen before cut (Unix ns) in
// one transaction, and keeps the counters of those still active in
// flows_retired (retired_at: now, Unix ns): if such a flow sends another
// record, ApplyBatch inserts it again with its whole cumulative counters,
// and adds to the traffic totals only what they grew by since. It returns
// the flows deleted.
func (db *DB) retireFlows(ctx context.Context, cut, now, batch int64) (int64, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `DELETE FROM flows WHERE rid IN (SELECT rid FROM flows WHERE last_seen < ? LIMIT ?)
		RETURNING id, packets, bytes, end_reason = ''`, cut, batch)
	if err != nil {
		return 0, err
	}
	type retiree struct {
		id             string
		packets, bytes int64
	}
	var active []retiree
	var n int64
	for rows.Next() {
		var r retiree
		var isActive bool
		if err := rows.Scan(&r.id, &r.packets, &r.bytes, &isActive); err != nil {
			rows.Close()
			return 0, err
		}
		n++
		if isActive {
			active = append(active, r)
		}
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(active) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO flows_retired (id, packets, bytes, retired_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET packets = excluded.packets, bytes = excluded.bytes, retired_at = excluded.retired_at`)
		if err != nil {
			return 0, err
		}
		defer st.Close()
		for _, r := range active {
			if _, err := st.ExecContext(ctx, r.id, r.packets, r.bytes, now); err != nil {
				return 0, fmt.Errorf("retire flow %s: %w", r.id, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}

// deleteLoop runs a DELETE of at most batch rows (query's second
// parameter) until it deletes fewer, each run its own transaction, yielding
// the writer between runs.
func (db *DB) deleteLoop(ctx context.Context, query string, arg, batch int64, n *int64) (int64, error) {
	var total int64
	for {
		res, err := db.w.ExecContext(ctx, query, arg, batch)
		if err != nil {
			return total, err
		}
		k, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += k
		if n != nil {
			*n += k
		}
		if k < batch {
			return total, nil
		}
		runtime.Gosched() // a waiting ApplyBatch gets the writer first
	}
}

// usage returns the main file's pages and free pages, from the writer (the
// latest state, including uncheckpointed pages).
func (db *DB) usage(ctx context.Context) (pages, free int64, err error) {
	err = db.w.QueryRowContext(ctx, "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count())").Scan(&pages, &free)
	return pages, free, err
}

// enforceSize deletes the oldest rows of every table, by capture time, while
// the live pages are over the high-water mark, until they are under the low
// one.
func (db *DB) enforceSize(ctx context.Context, now time.Time, res *RetainResult) error {
	pages, free, err := db.usage(ctx)
	if err != nil {
		return err
	}
	if (pages-free)*db.pageSize <= db.highWater {
		return nil
	}
	for round := 0; round < maxSizeRounds; round++ {
		used := (pages - free) * db.pageSize
		if used <= db.lowWater {
			return nil
		}
		oldest, newest, ok, err := db.timeSpan(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return nil // nothing left to delete
		}
		// Assume the rows are spread evenly over time: deleting the oldest
		// fraction f of the span frees about f of the used pages. Take at
		// least 1/32 of the span and at least one second, so every round
		// makes progress; overshoot is cheaper than many rounds.
		f := float64(used-db.lowWater)/float64(used) + 0.02
		f = min(max(f, 1.0/32), 1)
		cut := oldest.Add(max(time.Duration(float64(newest.Sub(oldest))*f), time.Second))
		// cut is after the oldest row's time: every round deletes a row.
		if err := db.deleteBefore(ctx, cut, now, pressureBatch, res); err != nil {
			return err
		}
		res.SizeCutoff = cut
		if pages, free, err = db.usage(ctx); err != nil {
			return err
		}
	}
	return nil
}

// timeSpan returns the oldest and newest capture times stored in any table
// (each read through its time index); ok is false when every table is empty.
func (db *DB) timeSpan(ctx context.Context) (oldest, newest time.Time, ok bool, err error) {
	var lo, hi [4]sql.NullInt64
	err = db.w.QueryRowContext(ctx, `SELECT
		(SELECT MIN(last_seen) FROM flows), (SELECT MAX(last_seen) FROM flows),
		(SELECT MIN(ts) FROM packets), (SELECT MAX(ts) FROM packets),
		(SELECT MIN(start) FROM flow_windows), (SELECT MAX(start) FROM flow_windows),
		(SELECT MIN(ts) FROM capture_stats), (SELECT MAX(ts) FROM capture_stats)`).Scan(
		&lo[0], &hi[0], &lo[1], &hi[1], &lo[2], &hi[2], &lo[3], &hi[3])
	if err != nil {
		return oldest, newest, false, err
	}
	conv := []func(int64) time.Time{
		func(v int64) time.Time { return time.Unix(0, v) },
		time.UnixMilli,
		func(v int64) time.Time { return time.Unix(v, 0) },
		func(v int64) time.Time { return time.Unix(v, 0) },
	}
	for i := range lo {
		if !lo[i].Valid {
			continue
		}
		l, h := conv[i](lo[i].Int64), conv[i](hi[i].Int64)
		if !ok || l.Before(oldest) {
			oldest = l
		}
		if !ok || h.After(newest) {
			newest = h
		}
		ok = true
	}
	return oldest, newest, ok, nil
}

// shrink returns free pages to the file system, a vacuumStep at a time,
// beyond a reserve that ingest will fill again: with a size bound the room
// between the low- and high-water marks (so the delete-reuse cycle at the
// bound moves no pages), else 1/8 of the file. Then it truncates the WAL if
// it outgrew its budget.
func (db *DB) shrink(ctx context.Context, res *RetainResult) error {
	for {
		pages, free, err := db.usage(ctx)
		if err != nil {
			return err
		}
		reserve := pages / 8
		if db.highWater > 0 {
			reserve = (db.highWater - db.lowWater) / db.pageSize
		}
		if free <= reserve {
			break
		}
		// incremental_vacuum returns no rows; Exec runs it to completion.
		if _, err := db.w.ExecContext(ctx, fmt.Sprintf("PRAGMA incremental_vacuum(%d)", min(free-reserve, vacuumStep))); err != nil {
			return err
		}
		after, _, err := db.usage(ctx)
		if err != nil {
			return err
		}
		res.VacuumedPages += pages - after
		if after >= pages {
			break // no progress (cannot happen with auto_vacuum=incremental)
		}
		runtime.Gosched()
	}
	if db.walBudget > 0 {
		if fi, err := os.Stat(db.path + "-wal"); err == nil && fi.Size() > db.walBudget {
			// TRUNCATE waits (busy_timeout) for readers to leave the WAL,
			// then empties it. Our read transactions are short.
			var busy, logPages, done int
			if err := db.w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done); err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	return nil
}

// Size returns the database's size in bytes: the main file (page_count ×
// page_size as the latest snapshot sees it) plus the WAL file.
func (db *DB) Size(ctx context.Context) (int64, error) {
	var pages, ps int64
	if err := db.r.QueryRowContext(ctx, "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT page_size FROM pragma_page_size())").Scan(&pages, &ps); err != nil {
		return 0, wrap("read size", err)
	}
	size := pages * ps
	fi, err := os.Stat(db.path + "-wal")
	switch {
	case err == nil:
		size += fi.Size()
	case !errors.Is(err, os.ErrNotExist):
		return 0, wrap("read size", err)
	}
	return size, nil
}

// retainLoop runs Retain every interval, and as soon as a batch reports
// size pressure, until ctx ends. A failure that repeats (a read-only file)
// is logged at most once a minute, with the count.
func (db *DB) retainLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var failed int
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-db.pressure:
		}
		_, err := db.Retain(ctx, db.opts.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			failed++
			if time.Since(logged) >= time.Minute {
				db.opts.Logger.Warn("retention failed", "err", err, "failures", failed, "db_path", db.path)
				logged, failed = time.Now(), 0
			}
		case err == nil && failed > 0:
			db.opts.Logger.Info("retention recovered", "failures", failed, "db_path", db.path)
			failed = 0
		}
	}
}
