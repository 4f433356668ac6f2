package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations are the embedded schema steps, loaded once.
var migrations = mustLoadMigrations(migrationFiles)

// A migration is one numbered schema step: migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string // file name without .sql
	sql     string
}

func mustLoadMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic(err) // the embedded files are part of the binary: a bug
	}
	return ms
}

// loadMigrations reads migrations/*.sql, checking that the numbers run
// 1, 2, 3… without gaps or repeats.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", n)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want number %d (no gaps or repeats)", m.name, i+1)
		}
	}
	return ms, nil
}

// afterMigration holds the steps of a migration that SQL does badly, run in
// its transaction after its SQL.
var afterMigration = map[int]func(context.Context, *sql.Tx) error{
	2: backfillTraffic,
}

// backfillTraffic starts the traffic totals (migration 2) at the sums over
// the flows already stored. It streams the rows and sums them in a map of
// at most 1024 labels: SQLite's GROUP BY would sort every row in memory
// (temp_store is MEMORY), tens of MiB for a large history.
func backfillTraffic(ctx context.Context, tx *sql.Tx) error {
	type label struct{ proto, direction string }
	type sums struct{ packets, bytes uint64 }
	totals := map[label]*sums{}
	rows, err := tx.QueryContext(ctx, "SELECT proto_num, direction, packets, bytes FROM flows")
	if err != nil {
		return err
	}
	defer rows.Close()
	add := func(a, b uint64) uint64 {
		if a+b < a {
			return math.MaxInt64 // the flows' counters saturate too
		}
		return min(a+b, math.MaxInt64)
	}
	for rows.Next() {
		var proto uint8
		var dir string
		var p, b int64
		if err := rows.Scan(&proto, &dir, &p, &b); err != nil {
			return err
		}
		switch dir {
		case "inbound", "outbound", "internal":
		default:
			dir = "unknown"
		}
		k := label{record.ProtoName(proto), dir}
		t := totals[k]
		if t == nil {
			t = new(sums)
			totals[k] = t
		}
		t.packets, t.bytes = add(t.packets, uint64(max(p, 0))), add(t.bytes, uint64(max(b, 0)))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for k, t := range totals {
		if t.packets == 0 && t.bytes == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO traffic (proto, direction, packets, bytes) VALUES (?, ?, ?, ?)",
			k.proto, k.direction, int64(t.packets), int64(t.bytes)); err != nil {
			return err
		}
	}
	return nil
}

// migrate applies the migrations not yet recorded in schema_migrations, each
// in its own transaction with its record, so a failure leaves the schema at
// the last whole step.
func migrate(ctx context.Context, w *sql.DB, ms []migration) error {
	if _, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL -- Unix ns
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var have int
	if err := w.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&have); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("schema version %d, this binary knows %d: %w", have, len(ms), ErrSchemaTooNew)
	}
	for _, m := range ms[have:] {
		if err := applyMigration(ctx, w, m); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, w *sql.DB, m migration) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Another process may have applied it since we looked: the write lock
	// (BEGIN IMMEDIATE) makes this check and the step atomic.
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if fill := afterMigration[m.version]; fill != nil {
		if err := fill(ctx, tx); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
		m.version, m.name, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}
