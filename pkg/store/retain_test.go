package store

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// fileSize returns the main file's and the WAL's sizes on disk.
func fileSize(tb testing.TB, db *DB) (main, wal int64) {
	tb.Helper()
	fi, err := os.Stat(db.path)
	if err != nil {
		tb.Fatal(err)
	}
	main = fi.Size()
	if fi, err := os.Stat(db.path + "-wal"); err == nil {
		wal = fi.Size()
	}
	return main, wal
}

func count(tb testing.TB, db *DB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.r.QueryRowContext(tb.Context(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestDB_Retain_Age stores two days of traffic and checks that Retain
// deletes exactly what is older than the retention, in every table, more
// rows than one delete transaction holds, and the capturers only after a
// week without contact.
func TestDB_Retain_Age(t *testing.T) {
	db := openTest(t, Options{Retention: 24 * time.Hour, AggregationWindow: time.Minute})
	m := newModel()
	s := newSim(31, 1000)
	var samples []record.PacketSample
	for h := range 48 {
		s.now = simStart.Add(time.Duration(h) * time.Hour)
		b := s.batch(scaled(300, 100), 60, 50)
		mustApply(t, db, s.cap, b)
		m.apply(b)
		samples = append(samples, b.Samples...)
	}
	now := simStart.Add(48 * time.Hour)
	cut := now.Add(-24 * time.Hour)
	wantFlows, wantPackets := 0, 0
	for _, f := range m.flows {
		if !f.LastSeen.Before(cut) {
			wantFlows++
		}
	}
	for _, p := range samples {
		if p.Timestamp >= cut.UnixMilli() {
			wantPackets++
		}
	}
	if len(m.flows)-wantFlows < deleteBatch || len(samples)-wantPackets < deleteBatch {
		t.Fatalf("too little old data (%d flows, %d samples) to span delete batches",
			len(m.flows)-wantFlows, len(samples)-wantPackets)
	}

	res, err := db.Retain(t.Context(), now)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if got := count(t, db, "SELECT COUNT(*) FROM flows"); got != wantFlows {
		t.Errorf("%d flows left, want %d", got, wantFlows)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM packets"); got != wantPackets {
		t.Errorf("%d packets left, want %d", got, wantPackets)
	}
	if res.Flows != int64(len(m.flows)-wantFlows) || res.Packets != int64(len(samples)-wantPackets) {
		t.Errorf("result counts %d flows, %d packets; want %d, %d", res.Flows, res.Packets,
			len(m.flows)-wantFlows, len(samples)-wantPackets)
	}
	for _, q := range []struct {
		sql string
		arg int64
	}{
		{"SELECT COUNT(*) FROM flows WHERE last_seen < ?", cut.UnixNano()},
		{"SELECT COUNT(*) FROM flow_windows WHERE start < ?", cut.Unix()},
		{"SELECT COUNT(*) FROM capture_stats WHERE ts < ?", cut.Unix()},
		{"SELECT COUNT(*) FROM flow_windows WHERE flow_rid NOT IN (SELECT rid FROM flows) AND ? = ?", 0},
	} {
		if n := count(t, db, q.sql, q.arg, q.arg); n != 0 {
			t.Errorf("%s: %d rows", q.sql, n)
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM flow_windows"); n == 0 {
		t.Error("every window deleted")
	}
	if n := count(t, db, "SELECT COUNT(*) FROM capture_stats"); n != 24 {
		t.Errorf("%d capture_stats rows, want 24 (one per hour kept)", n)
	}
	if seq, _ := db.LastSeq(t.Context(), s.cap.InstanceID); seq != s.seq {
		t.Errorf("LastSeq = %d after retention, want %d: the dedup state must outlive the data", seq, s.seq)
	}

	// Capturers and their dedup state go after a week without contact.
	if _, err := db.Retain(t.Context(), now.Add(6*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if seq, _ := db.LastSeq(t.Context(), s.cap.InstanceID); seq != s.seq {
		t.Errorf("LastSeq = %d after 6 days, want %d", seq, s.seq)
	}
	res, err = db.Retain(t.Context(), now.Add(8*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := db.LastSeq(t.Context(), s.cap.InstanceID); seq != 0 || res.Capturers != 1 {
		t.Errorf("after 8 days: LastSeq = %d, %d capturers deleted; want 0, 1", seq, res.Capturers)
	}
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestDB_Retain_Shrinks deletes most of a database and checks that the
// file gives the pages back: page_count drops, and so does the file after
// a checkpoint.
func TestDB_Retain_Shrinks(t *testing.T) {
	db := openTest(t, Options{Retention: time.Hour, MaxSize: -1})
	s := newSim(41, 2000)
	for range scaled(30, 10) {
		mustApply(t, db, s.cap, s.batch(1000, 50, 1000))
	}
	before, err := db.Size(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Keep the last second only.
	res, err := db.Retain(t.Context(), s.now.Add(time.Hour-2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	after, err := db.Size(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	main, _ := fileSize(t, db)
	t.Logf("%.1f MiB -> %.1f MiB (file %.1f MiB), %d pages vacuumed, %+v",
		float64(before)/(1<<20), float64(after)/(1<<20), float64(main)/(1<<20), res.VacuumedPages, res)
	if res.VacuumedPages == 0 || after > before/3 || main > before/3 {
		t.Errorf("file did not shrink: %d -> %d bytes (file %d)", before, after, main)
	}
	var free int64
	if err := db.w.QueryRow("PRAGMA freelist_count").Scan(&free); err != nil || free > vacuumStep {
		t.Errorf("freelist_count = %d, %v after retain", free, err)
	}
}

// TestDB_Retain_SizeBound is the long ingest: far more data than the bound
// goes in, with the background retention on (as in the API server), and
// after every batch the files on disk (main + WAL) stay under the bound
// plus the documented slack. Capture times advance one second per batch and
// the age retention is off, so only the size bound deletes.
//
// The slack is the WAL's excess over its budget: between two checkpoints
// the WAL holds up to wal_autocheckpoint pages plus one transaction (one
// batch), so it can pass its budget (MaxSize/8) by about one batch's pages;
// the main file never passes its cap (max_page_count). So the bound checked
// is MaxSize + 2 × the largest WAL growth one batch caused. The test logs
// the largest size seen.
func TestDB_Retain_SizeBound(t *testing.T) {
	bound, volume := int64(64<<20), int64(4*64<<20)
	if raceEnabled || testing.Short() {
		// The race detector makes SQLite ~20× slower: same shape, smaller.
		bound, volume = 4<<20, 4*4<<20
	}
	db := openTest(t, Options{MaxSize: bound, Retention: -1, AggregationWindow: time.Minute,
		RetainInterval: 50 * time.Millisecond})
	s := newSim(51, 5000)
	flows, samples := 500, 2000
	if raceEnabled || testing.Short() {
		flows, samples = 100, 400
	}

	var ingested, maxTotal, maxMain, maxWAL, maxStep int64
	var rows, fulls int
	var last *Batch
	for ingested < volume {
		b := s.batch(flows, flows/25, samples)
		_, walBefore := fileSize(t, db)
		for try := 0; ; try++ {
			ok, err := db.ApplyBatch(t.Context(), s.cap, b)
			if err == nil {
				if !ok {
					t.Fatalf("seq %d not applied", b.Seq)
				}
				break
			}
			if !errors.Is(err, ErrFull) || try > 5 {
				t.Fatalf("seq %d: %v", b.Seq, err)
			}
			// The cap stopped the write before the retention caught up:
			// the API server's ingest retries, so do we, after a Retain.
			fulls++
			if _, err := db.Retain(t.Context(), s.now); err != nil {
				t.Fatal(err)
			}
		}
		last = b
		rows += len(b.Flows) + len(b.Ended) + len(b.Samples)
		main, wal := fileSize(t, db)
		maxTotal, maxMain, maxWAL = max(maxTotal, main+wal), max(maxMain, main), max(maxWAL, wal)
		maxStep = max(maxStep, wal-walBefore)
		// Volume: what the batch would have added without retention, from
		// the rows (130 bytes per row on average, measured with retention
		// off for this mix), a conservative estimate.
		ingested += int64(len(b.Flows)+len(b.Ended)+len(b.Samples)) * 130
	}
	slack := 2 * maxStep
	t.Logf("bound %.1f MiB, ingested ~%.0f MiB (%d rows, %d batches): max main %.2f MiB, max WAL %.2f MiB, max total %.2f MiB; largest WAL step %.2f MiB; %d writes refused by the cap",
		mib(bound), mib(ingested), rows, s.seq, mib(maxMain), mib(maxWAL), mib(maxTotal), mib(maxStep), fulls)
	if maxMain > db.mainCap {
		t.Errorf("main file reached %d bytes, over its cap %d", maxMain, db.mainCap)
	}
	if maxTotal > bound+slack {
		t.Errorf("files reached %d bytes, over the bound %d + slack %d", maxTotal, bound, slack)
	}
	size, err := db.Size(t.Context())
	if err != nil || size > bound {
		t.Errorf("Size = %d, %v; want at most %d", size, err, bound)
	}

	// The newest data is all there, the oldest is gone, the file is sound.
	for _, f := range last.Flows {
		if _, err := db.Flow(t.Context(), f.ID); err != nil {
			t.Fatalf("newest flow %s: %v", f.ID, err)
		}
	}
	h, err := db.History(t.Context(), 1)
	if err != nil || len(h) != 1 || h[0].Timestamp < last.Samples[0].Timestamp-1000 {
		t.Errorf("newest sample = %v, %v", h, err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM packets"); n >= rows/2 {
		t.Errorf("%d of %d rows still stored: retention did not delete", n, rows)
	}
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// TestDB_SizeCap checks the hard cap alone: with no retention running, the
// writes stop with ErrFull when the main file reaches its cap, reads go on,
// and a Retain makes room so that the refused batch then applies.
func TestDB_SizeCap(t *testing.T) {
	db := openTest(t, Options{MaxSize: 4 << 20, Retention: -1})
	s := newSim(61, 500)
	var refused *Batch
	for i := 0; i < 10000 && refused == nil; i++ {
		b := s.batch(100, 5, 500)
		_, err := db.ApplyBatch(t.Context(), s.cap, b)
		switch {
		case errors.Is(err, ErrFull):
			refused = b
			if want := "store: write batch: "; err.Error()[:len(want)] != want {
				t.Errorf("error %q does not start with %q", err, want)
			}
		case err != nil:
			t.Fatal(err)
		}
	}
	if refused == nil {
		t.Fatal("the cap never refused a write")
	}
	main, _ := fileSize(t, db)
	if main > db.mainCap {
		t.Errorf("main file %d bytes, over its cap %d", main, db.mainCap)
	}
	if seq, _ := db.LastSeq(t.Context(), s.cap.InstanceID); seq != refused.Seq-1 {
		t.Errorf("LastSeq = %d, want %d (the refused batch is not committed)", seq, refused.Seq-1)
	}
	if _, _, err := db.Flows(t.Context(), FlowQuery{}); err != nil {
		t.Errorf("reads after ErrFull: %v", err)
	}
	res, err := db.Retain(t.Context(), s.now)
	if err != nil {
		t.Fatal(err)
	}
	if res.SizeCutoff.IsZero() {
		t.Errorf("Retain did not enforce the size: %+v", res)
	}
	mustApply(t, db, s.cap, refused)
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestDB_Retain_Background checks that the background retention runs on
// its own and stops with Close.
func TestDB_Retain_Background(t *testing.T) {
	now := simStart.Add(48 * time.Hour)
	db := openTest(t, Options{Retention: time.Hour, RetainInterval: 10 * time.Millisecond,
		Now: func() time.Time { return now }})
	s := newSim(71, 100)
	mustApply(t, db, s.cap, s.batch(50, 5, 50))
	deadline := time.Now().Add(30 * time.Second)
	for count(t, db, "SELECT COUNT(*) FROM flows") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("background retention did not delete old flows")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
