package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// makeReadOnly makes the file at path read-only for this process and
// returns the function that undoes it. As root, file modes do not stop
// writes (CAP_DAC_OVERRIDE), so the file gets the immutable attribute
// (chattr +i, which stops root too); otherwise it gets mode 0444.
func makeReadOnly(tb testing.TB, path string) (undo func()) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(path, 0o444); err != nil {
			tb.Fatal(err)
		}
		return func() { os.Chmod(path, 0o644) }
	}
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		tb.Skip("running as root and chattr not found: cannot make a file read-only for root")
	}
	if out, err := exec.Command(chattr, "+i", path).CombinedOutput(); err != nil {
		tb.Skipf("chattr +i %s: %v: %s (file system without the immutable attribute?)", path, err, out)
	}
	undo = func() { exec.Command(chattr, "-i", path).Run() }
	tb.Cleanup(undo) // before t.TempDir's removal, which it precedes
	return undo
}

// TestDB_ReadOnlyFile reopens a database whose file is read-only: it opens
// (schema current, nothing to write), every read works, a batch fails with
// an error wrapping ErrReadOnly and naming the operation, retention fails
// the same way, the file stays sound, and once the file is writable again
// the same batch applies.
func TestDB_ReadOnlyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	opts := Options{AggregationWindow: time.Minute}
	db, err := Open(t.Context(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(81, 200)
	for range 3 {
		mustApply(t, db, s.cap, s.batch(100, 10, 50))
	}
	wantFlows, _, err := db.Flows(t.Context(), FlowQuery{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	undo := makeReadOnly(t, path)
	db, err = Open(t.Context(), path, opts)
	if err != nil {
		t.Fatalf("Open of a read-only file: %v", err)
	}
	defer db.Close()
	b := s.batch(100, 10, 50)
	ok, err := db.ApplyBatch(t.Context(), s.cap, b)
	if ok || !errors.Is(err, ErrReadOnly) {
		t.Fatalf("ApplyBatch = %t, %v; want ErrReadOnly", ok, err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "store: write batch: ") || !strings.Contains(msg, "readonly") {
		t.Errorf("error %q does not say what failed and why", msg)
	}
	t.Logf("ApplyBatch: %v", err)
	if _, err := db.Retain(t.Context(), s.now.Add(48*time.Hour)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Retain = %v, want ErrReadOnly", err)
	}

	gotFlows, _, err := db.Flows(t.Context(), FlowQuery{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantFlows, gotFlows); d != "" {
		t.Errorf("flows changed (-want +got):\n%s", d)
	}
	if seq, err := db.LastSeq(t.Context(), s.cap.InstanceID); err != nil || seq != 3 {
		t.Errorf("LastSeq = %d, %v; want 3", seq, err)
	}
	for name, read := range map[string]func() error{
		"history": func() error { _, err := db.History(t.Context(), 10); return err },
		"windows": func() error { _, err := db.WindowSeries(t.Context(), WindowQuery{}); return err },
		"stats":   func() error { _, err := db.StatsSeries(t.Context(), time.Time{}, time.Time{}, 0); return err },
		"size":    func() error { _, err := db.Size(t.Context()); return err },
		"flow":    func() error { _, err := db.Flow(t.Context(), wantFlows[0].ID); return err },
	} {
		if err := read(); err != nil {
			t.Errorf("%s on a read-only file: %v", name, err)
		}
	}
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	undo()
	db = openAt(t, path, opts)
	mustApply(t, db, s.cap, b)
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestDB_DiskFull fills a small tmpfs: the batch that does not fit fails
// with an error wrapping ErrFull, nothing of it is committed, reads go on,
// the file stays sound, and once there is room the same batch applies and
// every batch committed before is there. Needs root (mount).
func TestDB_DiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount -t tmpfs)")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	// No size bound: the disk, not the cap, is what fills.
	db := openAt(t, filepath.Join(dir, "full.db"), Options{MaxSize: -1, Retention: -1, AggregationWindow: time.Minute})
	s := newSim(91, 2000)
	m := newModel()
	var failed *Batch
	for range 1000 {
		b := s.batch(200, 10, 300)
		ok, err := db.ApplyBatch(t.Context(), s.cap, b)
		if err != nil {
			if ok || !errors.Is(err, ErrFull) {
				t.Fatalf("ApplyBatch = %t, %v; want ErrFull", ok, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "store: write batch: ") || !strings.Contains(msg, "full") {
				t.Errorf("error %q does not say what failed and why", msg)
			}
			t.Logf("seq %d: %v", b.Seq, err)
			failed = b
			break
		}
		m.apply(b)
	}
	if failed == nil {
		t.Fatal("4 MiB never filled")
	}
	if seq, err := db.LastSeq(t.Context(), s.cap.InstanceID); err != nil || seq != failed.Seq-1 {
		t.Errorf("LastSeq = %d, %v; want %d", seq, err, failed.Seq-1)
	}
	check := func(when string) {
		t.Helper()
		n := 0
		if err := db.EachFlow(t.Context(), FlowQuery{}, func(f *record.Flow) error {
			n++
			if want := m.flows[f.ID]; !cmp.Equal(want, *f) {
				return fmt.Errorf("flow %s: %s", f.ID, cmp.Diff(want, *f))
			}
			return nil
		}); err != nil {
			t.Errorf("%s: %v", when, err)
		}
		if n != len(m.flows) {
			t.Errorf("%s: %d flows, want %d", when, n, len(m.flows))
		}
		if _, err := db.History(t.Context(), 10); err != nil {
			t.Errorf("%s: History: %v", when, err)
		}
		if err := db.IntegrityCheck(t.Context()); err != nil {
			t.Errorf("%s: %v", when, err)
		}
	}
	check("disk full")

	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v: %s", err, out)
	}
	mustApply(t, db, s.cap, failed)
	m.apply(failed)
	check("after the retry")
}

// TestDB_ConcurrentReaders reads with every query from several goroutines
// while one writes batches and the background retention deletes (a small
// size bound): no read or write may fail, SQLITE_BUSY included.
func TestDB_ConcurrentReaders(t *testing.T) {
	batches, readers := 150, 4
	if raceEnabled {
		batches = 15
	}
	db := openTest(t, Options{MaxSize: 4 << 20, Retention: -1, AggregationWindow: time.Minute,
		RetainInterval: 20 * time.Millisecond})
	s := newSim(101, 1000)
	mustApply(t, db, s.cap, s.batch(500, 10, 100))

	var wg sync.WaitGroup
	var done atomic.Bool
	var reads atomic.Int64
	errc := make(chan error, readers+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer done.Store(true)
		for range batches {
			b := s.batch(scaled(300, 150), 10, scaled(300, 150))
			for {
				_, err := db.ApplyBatch(t.Context(), s.cap, b)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrFull) { // the cap may refuse: retried, as ingest does
					errc <- fmt.Errorf("ApplyBatch: %w", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			var cursor string
			for !done.Load() {
				var err error
				switch rng.IntN(8) {
				case 0, 1:
					q := FlowQuery{Limit: 50, Cursor: cursor, Order: []Order{OrderLastSeen, OrderBytes}[r%2]}
					if r == 3 {
						q.CIDR = mustPrefix("10.0.0.0/8")
					}
					var fs []record.Flow
					fs, cursor, err = db.Flows(t.Context(), q)
					if err == nil && len(fs) > 0 {
						_, err = db.Flow(t.Context(), fs[0].ID)
						if errors.Is(err, ErrNotFound) {
							err = nil // deleted by the retention meanwhile
						}
					}
				case 2:
					_, err = db.History(t.Context(), 100)
				case 3:
					_, err = db.WindowSeries(t.Context(), WindowQuery{Limit: 100})
				case 4:
					_, err = db.StatsSeries(t.Context(), time.Time{}, time.Time{}, 100)
				case 5:
					_, err = db.Size(t.Context())
				case 6:
					_, err = db.LastSeq(t.Context(), s.cap.InstanceID)
				case 7:
					n := 0
					err = db.EachFlow(t.Context(), FlowQuery{Limit: 600}, func(*record.Flow) error { n++; return nil })
				}
				if err != nil {
					errc <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if reads.Load() < int64(readers) {
		t.Errorf("only %d reads", reads.Load())
	}
	t.Logf("%d reads during %d batches", reads.Load(), batches)
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
}
