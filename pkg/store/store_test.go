package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// TestOpen_Pragmas checks the connection settings the package promises: WAL
// (as SQLite reports it, not as asked), synchronous NORMAL, busy_timeout,
// foreign keys, incremental auto_vacuum, the size cap, and a read pool that
// cannot write.
func TestOpen_Pragmas(t *testing.T) {
	db := openTest(t, Options{MaxSize: 64 << 20})
	ctx := t.Context()
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "1"}, // NORMAL
		{"busy_timeout", "5000"},
		{"foreign_keys", "1"},
		{"auto_vacuum", "2"}, // INCREMENTAL
		{"temp_store", "2"},  // MEMORY
		{"max_page_count", "14336"},
		{"journal_size_limit", "8388608"},
	} {
		var got string
		if err := db.w.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("writer PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
	// max_page_count: (64 MiB - 8 MiB WAL budget) / 4096.
	if want := int64(64<<20-8<<20) / 4096; db.mainCap/db.pageSize != want {
		t.Errorf("main file cap = %d pages, want %d", db.mainCap/db.pageSize, want)
	}

	var mode string
	if err := db.r.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("reader journal_mode = %q, %v; want wal", mode, err)
	}
	if _, err := db.r.ExecContext(ctx, "DELETE FROM packets"); !errors.Is(classify(err), ErrReadOnly) {
		t.Errorf("read-only pool: DELETE = %v, want SQLITE_READONLY", err)
	}
}

// TestOpen_MigrationsIdempotent reopens a database several times: the
// migrations apply once, are recorded once each, and data survives.
func TestOpen_MigrationsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s := newSim(1, 10)
	for i := range 3 {
		db, err := Open(t.Context(), path, Options{})
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		rows, err := db.r.QueryContext(t.Context(), "SELECT version, name FROM schema_migrations ORDER BY version")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var v int
			var n string
			if err := rows.Scan(&v, &n); err != nil {
				t.Fatal(err)
			}
			got = append(got, n)
		}
		rows.Close()
		var want []string
		for _, m := range migrations {
			want = append(want, m.name)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("open #%d: schema_migrations = %v, want %v", i, got, want)
		}
		mustApply(t, db, s.cap, s.batch(5, 0, 1))
		h, err := db.History(t.Context(), 0)
		if err != nil || len(h) != i+1 {
			t.Errorf("open #%d: %d samples (%v), want %d", i, len(h), err, i+1)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpen_SchemaTooNew refuses a database a newer binary migrated.
func TestOpen_SchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	db, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.Exec("INSERT INTO schema_migrations VALUES (99, '0099_future', 0)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(t.Context(), path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
}

// TestOpen_NotADatabase names the problem instead of overwriting the file.
func TestOpen_NotADatabase(t *testing.T) {
	for name, content := range map[string]string{
		"text":      strings.Repeat("hello, not sqlite\n", 20),
		"truncated": "SQLite format 3\x00\x10",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(t.Context(), path, Options{})
			if err == nil || !strings.Contains(err.Error(), "not a SQLite database") {
				t.Fatalf("Open = %v, want not a SQLite database", err)
			}
			b, _ := os.ReadFile(path)
			if string(b) != content {
				t.Error("file changed")
			}
		})
	}
}

// TestOpen_Options rejects impossible options.
func TestOpen_Options(t *testing.T) {
	for name, o := range map[string]Options{
		"tiny max size":     {MaxSize: 1000},
		"negative window":   {AggregationWindow: -time.Second},
		"sub-second window": {AggregationWindow: time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(t.Context(), filepath.Join(t.TempDir(), "x.db"), o)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Open = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestOpen_WindowTriggers follows Options.AggregationWindow across reopens:
// the triggers appear, change width and disappear.
func TestOpen_WindowTriggers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	for _, tc := range []struct {
		window time.Duration
		want   int
	}{{10 * time.Second, 2}, {10 * time.Second, 2}, {0, 0}, {time.Minute, 2}} {
		db, err := Open(t.Context(), path, Options{AggregationWindow: tc.window})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var sql string
		if err := db.r.QueryRow("SELECT COUNT(*), COALESCE(MAX(sql), '') FROM sqlite_master WHERE type = 'trigger'").Scan(&n, &sql); err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("window %v: %d triggers, want %d", tc.window, n, tc.want)
		}
		if w := fmt.Sprintf("%% %d)", int(tc.window/time.Second)); tc.window > 0 && !strings.Contains(sql, w) {
			t.Errorf("window %v: trigger does not hold the width (%q): %s", tc.window, w, sql)
		}
		db.Close()
	}
}

func TestLoadMigrations(t *testing.T) {
	f := func(names ...string) fstest.MapFS {
		m := fstest.MapFS{}
		for _, n := range names {
			m["migrations/"+n] = &fstest.MapFile{Data: []byte("SELECT 1;")}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
		ok   bool
	}{
		{"ok", f("0001_a.sql", "0002_b.sql"), true},
		{"gap", f("0001_a.sql", "0003_c.sql"), false},
		{"repeat", f("0001_a.sql", "0001_b.sql"), false},
		{"not numbered", f("init.sql"), false},
		{"zero", f("0000_a.sql"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadMigrations(tc.fs)
			if (err == nil) != tc.ok {
				t.Errorf("loadMigrations = %v, want ok=%t", err, tc.ok)
			}
		})
	}
	if len(migrations) == 0 || migrations[0].name != "0001_init" {
		t.Errorf("embedded migrations = %v", migrations)
	}
}
