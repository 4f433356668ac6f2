package store

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

func ts(sec int64) record.Time { return record.Time{Time: time.Unix(1_700_000_000+sec, 0).UTC()} }

// counts returns the rows of each data table.
func counts(tb testing.TB, db *DB) map[string]int {
	tb.Helper()
	out := map[string]int{}
	for _, t := range []string{"flows", "flow_windows", "packets", "capture_stats", "capturers", "applied_batches"} {
		var n int
		if err := db.r.QueryRowContext(tb.Context(), "SELECT COUNT(*) FROM "+t).Scan(&n); err != nil {
			tb.Fatal(err)
		}
		out[t] = n
	}
	return out
}

// TestDB_ApplyBatch_Idempotent applies batches, resends them before and
// after a reopen, and checks each is applied once: the dedup state commits
// with the data and survives restarts.
func TestDB_ApplyBatch_Idempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dedup.db")
	db := openAt(t, path, Options{AggregationWindow: 10 * time.Second})
	s := newSim(7, 50)
	b1, b2 := s.batch(20, 2, 5), s.batch(20, 2, 5)
	mustApply(t, db, s.cap, b1)
	mustApply(t, db, s.cap, b2)
	want := counts(t, db)
	for _, b := range []*Batch{b2, b1} {
		ok, err := db.ApplyBatch(t.Context(), s.cap, b)
		if err != nil || ok {
			t.Fatalf("resend seq %d: applied=%t err=%v, want false, nil", b.Seq, ok, err)
		}
	}
	if got := counts(t, db); !cmp.Equal(got, want) {
		t.Fatalf("resend changed rows: %s", cmp.Diff(want, got))
	}
	db.Close()

	db = openAt(t, path, Options{AggregationWindow: 10 * time.Second})
	if seq, err := db.LastSeq(t.Context(), s.cap.InstanceID); err != nil || seq != 2 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 2", seq, err)
	}
	for _, b := range []*Batch{b1, b2} {
		if ok, err := db.ApplyBatch(t.Context(), s.cap, b); err != nil || ok {
			t.Fatalf("resend seq %d after reopen: applied=%t err=%v", b.Seq, ok, err)
		}
	}
	if got := counts(t, db); !cmp.Equal(got, want) {
		t.Fatalf("resend after reopen changed rows: %s", cmp.Diff(want, got))
	}

	// Gaps are allowed; a seq under the last is not applied.
	b5 := s.batch(5, 0, 1)
	b5.Seq = 5
	mustApply(t, db, s.cap, b5)
	b4 := s.batch(5, 0, 1)
	b4.Seq = 4
	if ok, err := db.ApplyBatch(t.Context(), s.cap, b4); ok || err != nil {
		t.Errorf("seq 4 after 5: applied=%t err=%v", ok, err)
	}
	// Another instance has its own sequence.
	other := s.cap
	other.InstanceID = "another"
	b1.Seq = 1
	mustApply(t, db, other, b1)
	if seq, _ := db.LastSeq(t.Context(), "another"); seq != 1 {
		t.Errorf("LastSeq(another) = %d, want 1", seq)
	}
	if seq, _ := db.LastSeq(t.Context(), "never-seen"); seq != 0 {
		t.Errorf("LastSeq(never-seen) = %d, want 0", seq)
	}
}

// TestDB_ApplyBatch_Atomic makes the last statement of a batch fail and
// checks that nothing of it is committed, the seq included, and that the
// same batch applies once the cause is gone.
func TestDB_ApplyBatch_Atomic(t *testing.T) {
	db := openTest(t, Options{})
	s := newSim(3, 30)
	mustApply(t, db, s.cap, s.batch(10, 0, 2))
	before := counts(t, db)

	// A temporary trigger lives on the writer connection only.
	if _, err := db.w.Exec(`CREATE TEMP TRIGGER boom BEFORE INSERT ON capture_stats
		BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	b := s.batch(20, 3, 10)
	ok, err := db.ApplyBatch(t.Context(), s.cap, b)
	if ok || err == nil || !strings.Contains(err.Error(), "boom") || !strings.HasPrefix(err.Error(), "store: write batch: ") {
		t.Fatalf("ApplyBatch = %t, %v; want an error naming the cause", ok, err)
	}
	if got := counts(t, db); !cmp.Equal(got, before) {
		t.Fatalf("failed batch left rows: %s", cmp.Diff(before, got))
	}
	if seq, _ := db.LastSeq(t.Context(), s.cap.InstanceID); seq != 1 {
		t.Fatalf("LastSeq = %d after a failed batch, want 1", seq)
	}
	if _, err := db.w.Exec("DROP TRIGGER temp.boom"); err != nil {
		t.Fatal(err)
	}
	mustApply(t, db, s.cap, b)
	if seq, _ := db.LastSeq(t.Context(), s.cap.InstanceID); seq != 2 {
		t.Fatalf("LastSeq = %d after the retry, want 2", seq)
	}
}

func TestDB_ApplyBatch_Invalid(t *testing.T) {
	db := openTest(t, Options{})
	c := Capturer{InstanceID: "i"}
	for _, tc := range []struct {
		name string
		c    Capturer
		b    Batch
	}{
		{"no instance", Capturer{}, Batch{Seq: 1}},
		{"seq 0", c, Batch{}},
		{"seq over int64", c, Batch{Seq: math.MaxUint64}},
		{"flow without id", c, Batch{Seq: 1, Flows: []record.Flow{{}}}},
		{"ended without id", c, Batch{Seq: 1, Ended: []record.Flow{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := db.ApplyBatch(t.Context(), tc.c, &tc.b)
			if ok || !errors.Is(err, ErrInvalid) {
				t.Errorf("ApplyBatch = %t, %v; want ErrInvalid", ok, err)
			}
		})
	}
	if n := counts(t, db)["applied_batches"]; n != 0 {
		t.Errorf("%d applied batches, want 0", n)
	}
}

// TestDB_ApplyBatch_Cumulative sends successive cumulative records of one
// flow, then its final record superseding an update in the same batch, and
// checks the row always holds the latest record whole.
func TestDB_ApplyBatch_Cumulative(t *testing.T) {
	db := openTest(t, Options{})
	c := Capturer{InstanceID: "cum"}
	f := record.Flow{
		ID: "f1", CommunityID: "1:abc", Proto: "tcp", ProtoNum: 6,
		SrcIP: "10.0.0.1", SrcPort: 40000, DstIP: "10.0.0.2", DstPort: 443, VLAN: 7,
		FirstSeen: ts(0), LastSeen: ts(1), PacketsSent: 1, BytesSent: 74,
		TCPFlags: "S", History: "S", State: "S0", Direction: record.DirOutbound,
	}
	mustApply(t, db, c, &Batch{Seq: 1, Flows: []record.Flow{f}})

	f.LastSeen, f.PacketsSent, f.BytesSent, f.PacketsReceived, f.BytesReceived = ts(2), 3, 300, 2, 2000
	f.TCPFlags, f.History, f.State = "SA", "ShAD", "S1"
	mustApply(t, db, c, &Batch{Seq: 2, Flows: []record.Flow{f}})
	got, err := db.Flow(t.Context(), "f1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f, got); d != "" {
		t.Fatalf("after update (-want +got):\n%s", d)
	}

	// One batch with an update and the final record: the final one wins,
	// whatever the order in the batch.
	upd := f
	upd.LastSeen, upd.PacketsSent = ts(3), 4
	fin := f
	fin.LastSeen, fin.PacketsSent, fin.BytesSent, fin.State, fin.History, fin.EndReason = ts(4), 5, 500, "SF", "ShADFf", record.EndClosed
	mustApply(t, db, c, &Batch{Seq: 3, Flows: []record.Flow{upd}, Ended: []record.Flow{fin}})
	got, err = db.Flow(t.Context(), "f1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(fin, got); d != "" {
		t.Fatalf("after end (-want +got):\n%s", d)
	}
	if n := counts(t, db)["flows"]; n != 1 {
		t.Errorf("%d flow rows, want 1", n)
	}
	flows, _, err := db.Flows(t.Context(), FlowQuery{})
	if err != nil || len(flows) != 1 || flows[0].EndReason != record.EndClosed {
		t.Errorf("Flows = %v, %v; want the ended flow", flows, err)
	}
}

// TestDB_FlowRoundTrip stores flows with every field set, or at its edge,
// and reads them back unchanged.
func TestDB_FlowRoundTrip(t *testing.T) {
	db := openTest(t, Options{})
	flows := []record.Flow{
		{ID: "a", CommunityID: "1:x", Proto: "udp", ProtoNum: 17, SrcIP: "2001:db8::1", SrcPort: 65535,
			DstIP: "ff02::fb", DstPort: 5353, VLAN: 4094,
			FirstSeen:   record.Time{Time: time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.UTC)},
			LastSeen:    record.Time{Time: time.Date(2024, 3, 1, 0, 0, 0, 1, time.UTC)},
			PacketsSent: math.MaxInt64, BytesSent: 1 << 40, PacketsReceived: 0, BytesReceived: 1,
			TCPFlags: "", History: "Dd", State: "SF", Direction: record.DirInternal, EndReason: record.EndEOF},
		{ID: "b", Proto: "47", ProtoNum: 47, SrcIP: "not-an-address", DstIP: ""}, // zero times, unparsable IPs
		{ID: "c", Proto: "icmp", ProtoNum: 1, SrcIP: "::ffff:10.1.2.3", DstIP: "10.1.2.4",
			FirstSeen: ts(-1_700_000_000 - 86400), LastSeen: ts(-1_700_000_000 - 86400)}, // before 1970
	}
	mustApply(t, db, Capturer{InstanceID: "rt"}, &Batch{Seq: 1, Ended: flows})
	for _, want := range flows {
		got, err := db.Flow(t.Context(), want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("flow %s (-want +got):\n%s", want.ID, d)
		}
	}
	// A counter over int64 saturates instead of failing the batch.
	big := flows[0]
	big.ID, big.BytesSent = "big", math.MaxUint64
	mustApply(t, db, Capturer{InstanceID: "rt"}, &Batch{Seq: 2, Flows: []record.Flow{big}})
	got, _ := db.Flow(t.Context(), "big")
	if got.BytesSent != math.MaxInt64 {
		t.Errorf("saturated bytes_sent = %d, want %d", got.BytesSent, int64(math.MaxInt64))
	}
	if _, err := db.Flow(t.Context(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Flow(nope) = %v, want ErrNotFound", err)
	}
}

// TestDB_Windows checks the per-window deltas derived from cumulative
// records: a window holds the growth reported by the records whose
// last_seen falls in it; the windows of a flow sum to its counters; a
// counter going down counts zero.
func TestDB_Windows(t *testing.T) {
	db := openTest(t, Options{AggregationWindow: 10 * time.Second})
	c := Capturer{InstanceID: "win"}
	f := record.Flow{ID: "w", Proto: "tcp", ProtoNum: 6, SrcIP: "10.0.0.1", DstIP: "10.0.0.2", FirstSeen: ts(0)}
	g := record.Flow{ID: "g", Proto: "udp", ProtoNum: 17, SrcIP: "10.0.0.3", DstIP: "10.0.0.4", FirstSeen: ts(0)}
	steps := []struct {
		last           int64
		ps, bs, pr, br uint64
	}{
		{3, 1, 100, 0, 0},      // window 0: +1/100
		{8, 4, 400, 2, 20},     // window 0: +3/300 +2/20
		{12, 10, 1000, 2, 20},  // window 10: +6/600
		{15, 9, 900, 5, 50},    // window 10: packets_sent down: +0/0 +3/30
		{35, 20, 2000, 5, 50},  // window 30: +11/1100 (from 9/900)
		{36, 20, 2000, 5, 50},  // no growth: no row change
		{-25, 21, 2100, 6, 60}, // a record timed before 1970+… still floors: window -30
	}
	for i, st := range steps {
		f.LastSeen = ts(st.last)
		f.PacketsSent, f.BytesSent, f.PacketsReceived, f.BytesReceived = st.ps, st.bs, st.pr, st.br
		g.LastSeen, g.PacketsSent, g.BytesSent = ts(st.last), uint64(i+1), uint64(10*(i+1))
		mustApply(t, db, c, &Batch{Seq: uint64(i + 1), Flows: []record.Flow{f, g}})
	}
	w := func(start, ps, bs, pr, br int64) Window {
		return Window{Start: ts(start).Time, WidthSeconds: 10, Flows: 1,
			PacketsSent: uint64(ps), BytesSent: uint64(bs), PacketsReceived: uint64(pr), BytesReceived: uint64(br)}
	}
	// 1_700_000_000 is a multiple of 10, so ts(k) windows start at ts(k/10*10).
	want := []Window{
		w(-30, 1, 100, 1, 10),
		w(0, 4, 400, 2, 20),
		w(10, 6, 600, 3, 30),
		w(30, 11, 1100, 0, 0),
	}
	got, err := db.WindowSeries(t.Context(), WindowQuery{FlowID: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("windows of w (-want +got):\n%s", d)
	}
	var sum [4]uint64
	for _, x := range got {
		sum[0] += x.PacketsSent
		sum[1] += x.BytesSent
	}
	// The decrease (10 -> 9) is not subtracted, so the sum can exceed the
	// final counter by it; without decreases it equals it (flow g).
	if sum[0] != 22 || sum[1] != 2200 {
		t.Errorf("sum of windows = %d/%d, want 22/2200", sum[0], sum[1])
	}
	gw, _ := db.WindowSeries(t.Context(), WindowQuery{FlowID: "g"})
	var gsum uint64
	for _, x := range gw {
		gsum += x.PacketsSent
	}
	if gsum != uint64(len(steps)) {
		t.Errorf("windows of g sum to %d packets, want %d (its cumulative count)", gsum, len(steps))
	}

	// All flows: one row per window start, counting the flows in it.
	all, err := db.WindowSeries(t.Context(), WindowQuery{Since: ts(0).Time, Until: ts(30).Time})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Flows != 2 || all[0].PacketsSent != 4+2 || all[1].Start != ts(10).Time {
		t.Errorf("all windows in [0,30) = %+v", all)
	}
	if got, _ := db.WindowSeries(t.Context(), WindowQuery{FlowID: "w", Limit: 1}); len(got) != 1 {
		t.Errorf("limit 1: %d windows", len(got))
	}
}

// TestDB_Stats checks the capture statistics series: cumulative values
// stored per batch, at most one row per instance per second (the last
// wins), decode errors and drop counters included.
func TestDB_Stats(t *testing.T) {
	db := openTest(t, Options{})
	c := Capturer{InstanceID: "st", Hostname: "box", Software: "lightshark-capturer 1", Interface: "eth0",
		LinkType: 1, Filter: "port 443", StartTime: ts(-5).Time}
	at := ts(100).Time
	st := record.CaptureStats{Packets: 10, Bytes: 1000, KernelReceived: 11, KernelDrops: 1, FlowPackets: 9,
		NonIP: 1, DecodeErrors: map[string]uint64{"truncated": 2, "bad_ip": 1}, Filtered: 3, Flows: 4,
		ActiveFlows: 2, Evictions: 1, FragmentsPending: 5}
	dr := DropStats{SamplesDropped: 1, BatchesCoalesced: 2, UpdatesDropped: 3, EndedDropped: 4, EndedPackets: 5, EndedBytes: 6}
	mustApply(t, db, c, &Batch{Seq: 1, Stats: st, Dropped: dr, ReceivedAt: at})
	st.Packets = 20 // same second: replaces
	mustApply(t, db, c, &Batch{Seq: 2, Stats: st, Dropped: dr, ReceivedAt: at.Add(500 * time.Millisecond)})
	st2 := st
	st2.Packets, st2.DecodeErrors = 30, nil
	mustApply(t, db, c, &Batch{Seq: 3, Stats: st2, ReceivedAt: at.Add(time.Second)})

	got, err := db.StatsSeries(t.Context(), time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []StatsPoint{
		{At: at, CapturerID: "st", Stats: st, Dropped: dr},
		{At: at.Add(time.Second), CapturerID: "st", Stats: st2},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("StatsSeries (-want +got):\n%s", d)
	}
	got, _ = db.StatsSeries(t.Context(), at.Add(time.Second), time.Time{}, 0)
	if len(got) != 1 || got[0].Stats.Packets != 30 {
		t.Errorf("since: %+v", got)
	}
	got, _ = db.StatsSeries(t.Context(), time.Time{}, at.Add(time.Second), 0)
	if len(got) != 1 || got[0].Stats.Packets != 20 {
		t.Errorf("until: %+v", got)
	}

	caps, err := db.Capturers(t.Context())
	if err != nil || len(caps) != 1 {
		t.Fatalf("Capturers = %v, %v", caps, err)
	}
	wantCap := c
	wantCap.FirstSeen, wantCap.LastSeen, wantCap.LastSeq = at, at.Add(time.Second), 3
	if d := cmp.Diff(wantCap, caps[0]); d != "" {
		t.Errorf("Capturers (-want +got):\n%s", d)
	}
}

// TestDB_History returns the newest samples first, bounded.
func TestDB_History(t *testing.T) {
	db := openTest(t, Options{})
	var ss []record.PacketSample
	for i := range 1500 { // more than one multi-row statement, and a remainder
		ss = append(ss, record.PacketSample{Timestamp: int64(1_700_000_000_000 + i), SrcIP: "10.0.0.1", DstIP: "10.0.0.2",
			SrcPort: uint16(i), DstPort: 443, Protocol: "tcp", Length: uint32(60 + i), FlowID: "f"})
	}
	mustApply(t, db, Capturer{InstanceID: "h"}, &Batch{Seq: 1, Samples: ss})
	for _, tc := range []struct{ limit, want int }{{0, DefaultLimit}, {5, 5}, {5000, MaxLimit}} {
		got, err := db.History(t.Context(), tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Fatalf("History(%d): %d samples, want %d", tc.limit, len(got), tc.want)
		}
		for i, s := range got {
			if want := ss[len(ss)-1-i]; s != want {
				t.Fatalf("History(%d)[%d] = %+v, want %+v", tc.limit, i, s, want)
			}
		}
	}
}
