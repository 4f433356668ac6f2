package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// TestSQLiteMemory: SQLite counts its allocations (the package turned the
// statistics on), an open database holds some, reading a table larger than
// the readers' page caches fills them, and closing gives the memory back.
// The counters are global to the process, so the test is not parallel.
func TestSQLiteMemory(t *testing.T) {
	mem := func() (used, high int64) {
		t.Helper()
		used, high, err := SQLiteMemory()
		if err != nil {
			t.Fatal(err)
		}
		return used, high
	}
	path := filepath.Join(t.TempDir(), "traffic.db")
	// Each reader caches CacheKiB/4 = 512 KiB; the flows table and its
	// indexes take several times that (3 MiB under the race detector, 7
	// without).
	opts := Options{CacheKiB: 2048, Retention: -1, MaxSize: -1}
	nflows := scaled(20000, 8000)
	db, err := Open(t.Context(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(1, nflows)
	mustApply(t, db, s.cap, s.batch(nflows, 0, 0))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	size := fileBytes(t, path)
	if size < 2<<20 {
		t.Fatalf("database of %d bytes, want at least 2 MiB: four times what a reader caches", size)
	}

	before, _ := mem()
	// Reopened: every cache starts cold.
	db = openAt(t, path, opts)
	opened, _ := mem()
	t.Logf("SQLite memory: %d bytes before Open, %d after", before, opened)
	if opened <= 0 || opened <= before {
		t.Fatalf("after Open: got %d bytes, want more than 0 and than before Open (%d)", opened, before)
	}

	n := 0
	err = db.EachFlow(t.Context(), FlowQuery{}, func(*record.Flow) error { n++; return nil })
	if err != nil || n != nflows {
		t.Fatalf("EachFlow: got %d flows, %v; want %d", n, err, nflows)
	}
	read, high := mem()
	t.Logf("SQLite memory after reading %d flows (%d-byte file): %d bytes, high-water %d", n, size, read, high)
	// At least one reader's cache filled (its bound is 512 KiB, and the
	// pages carry SQLite's headers on top).
	if read-opened < 256<<10 {
		t.Errorf("after reading every flow: got %d bytes, want at least 256 KiB more than after Open (%d)", read, opened)
	}
	if high < read {
		t.Errorf("high-water mark: got %d, want at least the %d bytes in use", high, read)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	closed, _ := mem()
	if closed >= read-256<<10 {
		t.Errorf("after Close: got %d bytes, want the page caches given back (%d while open)", closed, read)
	}
}

// fileBytes returns the size of the database at path, WAL included.
func fileBytes(tb testing.TB, path string) int64 {
	tb.Helper()
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}
