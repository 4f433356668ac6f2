package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// flowSums returns the packets and bytes of every stored flow, summed by
// protocol and direction as Traffic labels them, read through EachFlow
// (what /api/flows serves).
func flowSums(tb testing.TB, db *DB) []TrafficCount {
	tb.Helper()
	sums := map[[2]string]*TrafficCount{}
	if err := db.EachFlow(tb.Context(), FlowQuery{}, func(f *record.Flow) error {
		k := [2]string{record.ProtoName(f.ProtoNum), directionNames[directionCode(f.Direction)]}
		c := sums[k]
		if c == nil {
			c = &TrafficCount{Proto: k[0], Direction: k[1]}
			sums[k] = c
		}
		c.Packets += f.PacketsSent + f.PacketsReceived
		c.Bytes += f.BytesSent + f.BytesReceived
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	var out []TrafficCount
	for _, c := range sums {
		if c.Packets != 0 || c.Bytes != 0 {
			out = append(out, *c)
		}
	}
	return sortedCounts(out)
}

func sortedCounts(c []TrafficCount) []TrafficCount {
	out := slices.Clone(c)
	slices.SortFunc(out, func(a, b TrafficCount) int {
		return cmp.Or(strings.Compare(a.Proto, b.Proto), strings.Compare(a.Direction, b.Direction))
	})
	return out
}

// trafficTable returns the traffic table as stored in the file.
func trafficTable(tb testing.TB, db *DB) []TrafficCount {
	tb.Helper()
	rows, err := db.r.QueryContext(tb.Context(), "SELECT proto, direction, packets, bytes FROM traffic WHERE packets > 0 OR bytes > 0")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []TrafficCount
	for rows.Next() {
		var c TrafficCount
		if err := rows.Scan(&c.Proto, &c.Direction, &c.Packets, &c.Bytes); err != nil {
			tb.Fatal(err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return sortedCounts(out)
}

// checkTraffic checks that Traffic, the traffic table and want agree.
func checkTraffic(tb testing.TB, db *DB, want []TrafficCount) {
	tb.Helper()
	got, _ := db.Traffic()
	if d := gocmp.Diff(want, got); d != "" {
		tb.Errorf("Traffic() differs from the sums over the flows (-want +got):\n%s", d)
	}
	if d := gocmp.Diff(want, trafficTable(tb, db)); d != "" {
		tb.Errorf("traffic table differs from the sums over the flows (-want +got):\n%s", d)
	}
}

// TestDB_Traffic: the totals equal the sums over the stored flows through
// many batches of updates, new and ended flows (several chunks each, with
// ids repeated within a batch), are unchanged by resent batches, and
// survive a reopen.
func TestDB_Traffic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "traffic.db")
	db := openAt(t, path, Options{Retention: -1, MaxSize: -1})
	if got, v := db.Traffic(); len(got) != 0 || v == 0 {
		t.Errorf("new store: Traffic() = %v, version %d; want none, version > 0", got, v)
	}
	s := newSim(11, 2000)
	var sent []*Batch
	for range scaled(12, 4) {
		b := s.batch(900, 30, 5) // four chunks
		// The same flow twice in one batch, within one chunk: the later
		// record wins, and its growth over the earlier counts once.
		again := b.Flows[flowChunk/4]
		again.PacketsSent += 7
		again.BytesSent += 700
		b.Flows = slices.Insert(b.Flows, flowChunk/2, again)
		mustApply(t, db, s.cap, b)
		sent = append(sent, b)
	}
	want := flowSums(t, db)
	if len(want) < 8 {
		t.Fatalf("only %d proto/direction pairs: the simulation should make more", len(want))
	}
	checkTraffic(t, db, want)

	_, v := db.Traffic()
	for _, b := range sent {
		if ok, err := db.ApplyBatch(t.Context(), s.cap, b); ok || err != nil {
			t.Fatalf("resend seq %d: applied=%t err=%v", b.Seq, ok, err)
		}
	}
	if _, v2 := db.Traffic(); v2 != v {
		t.Errorf("resent batches changed the version: %d, was %d", v2, v)
	}
	checkTraffic(t, db, want)

	db.Close()
	db = openAt(t, path, Options{Retention: -1, MaxSize: -1})
	checkTraffic(t, db, want)
	mustApply(t, db, s.cap, s.batch(500, 10, 0))
	checkTraffic(t, db, flowSums(t, db))
}

// TestDB_Traffic_updatedManyTimes: a flow updated in many batches counts
// its cumulative counters once, not once per update.
func TestDB_Traffic_updatedManyTimes(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	c := Capturer{InstanceID: "i"}
	f := record.Flow{ID: "f1", Proto: "udp", ProtoNum: 17, SrcIP: "10.0.0.1", DstIP: "10.0.0.2", Direction: record.DirOutbound,
		State: "S0", FirstSeen: ts(0), LastSeen: ts(0)}
	for i := 1; i <= 50; i++ {
		f.PacketsSent, f.BytesSent = uint64(i), uint64(100*i)
		f.PacketsReceived, f.BytesReceived = uint64(i/2), uint64(50*i)
		f.LastSeen = ts(int64(i))
		mustApply(t, db, c, &Batch{Seq: uint64(i), Flows: []record.Flow{f}})
	}
	checkTraffic(t, db, []TrafficCount{{Proto: "udp", Direction: "outbound", Packets: 75, Bytes: 7500}})
}

// TestDB_Traffic_counterReset: a record with lower counters than the
// stored row (the flow id reused by another capture, as when a file is
// imported twice) counts whole; the totals never go down.
func TestDB_Traffic_counterReset(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	f := record.Flow{ID: "f1", ProtoNum: 6, Proto: "tcp", State: "SF", FirstSeen: ts(0), LastSeen: ts(1),
		PacketsSent: 10, BytesSent: 1000}
	mustApply(t, db, Capturer{InstanceID: "a"}, &Batch{Seq: 1, Ended: []record.Flow{f}})
	f.PacketsSent, f.BytesSent = 4, 400
	mustApply(t, db, Capturer{InstanceID: "b"}, &Batch{Seq: 1, Flows: []record.Flow{f}})
	f.PacketsSent, f.BytesSent = 10, 1000
	mustApply(t, db, Capturer{InstanceID: "b"}, &Batch{Seq: 2, Ended: []record.Flow{f}})
	got, _ := db.Traffic()
	if want := []TrafficCount{{Proto: "tcp", Direction: "unknown", Packets: 20, Bytes: 2000}}; !gocmp.Equal(got, want) {
		t.Errorf("Traffic() = %v, want %v", got, want)
	}
}

// TestDB_Traffic_labels: the labels are bounded and normalised: the
// protocol by its number, the direction to one of four.
func TestDB_Traffic_labels(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	flows := []record.Flow{
		{ID: "a", Proto: "tcp", ProtoNum: 6, Direction: "inbound"},
		{ID: "b", Proto: "made-up", ProtoNum: 6, Direction: "sideways"},
		{ID: "c", Proto: "47", ProtoNum: 47, Direction: "internal"},
		{ID: "d", ProtoNum: 132},
	}
	for i := range flows {
		flows[i].PacketsSent, flows[i].BytesSent = 1, 100
	}
	mustApply(t, db, Capturer{InstanceID: "i"}, &Batch{Seq: 1, Flows: flows})
	checkTraffic(t, db, []TrafficCount{
		{Proto: "47", Direction: "internal", Packets: 1, Bytes: 100},
		{Proto: "sctp", Direction: "unknown", Packets: 1, Bytes: 100},
		{Proto: "tcp", Direction: "inbound", Packets: 1, Bytes: 100},
		{Proto: "tcp", Direction: "unknown", Packets: 1, Bytes: 100},
	})
}

// TestDB_Traffic_retired: a flow that retention deletes while it is still
// active, and that then sends more records, adds only what it grew by
// since; an ended flow's deletion leaves nothing behind; the record of a
// retired flow that never comes back is dropped after the capturers'
// retention.
func TestDB_Traffic_retired(t *testing.T) {
	db := openTest(t, Options{Retention: time.Hour, MaxSize: -1})
	c := Capturer{InstanceID: "i"}
	old := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) record.Time { return record.Time{Time: old.Add(d)} }
	active := record.Flow{ID: "active", ProtoNum: 17, Proto: "udp", Direction: record.DirOutbound, State: "S0",
		FirstSeen: at(0), LastSeen: at(time.Second), PacketsSent: 10, BytesSent: 1000}
	ended := record.Flow{ID: "ended", ProtoNum: 17, Proto: "udp", Direction: record.DirOutbound, State: "SF",
		FirstSeen: at(0), LastSeen: at(time.Second), PacketsSent: 1, BytesSent: 100, EndReason: record.EndIdle}
	gone := record.Flow{ID: "gone", ProtoNum: 17, Proto: "udp", Direction: record.DirOutbound, State: "S0",
		FirstSeen: at(0), LastSeen: at(time.Second), PacketsSent: 5, BytesSent: 500}
	mustApply(t, db, c, &Batch{Seq: 1, Flows: []record.Flow{active, gone}, Ended: []record.Flow{ended}})
	want := []TrafficCount{{Proto: "udp", Direction: "outbound", Packets: 16, Bytes: 1600}}
	checkTraffic(t, db, want)

	now := old.Add(2 * time.Hour)
	res, err := db.Retain(t.Context(), now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Flows != 3 {
		t.Fatalf("Retain deleted %d flows, want 3", res.Flows)
	}
	var retired int
	if err := db.r.QueryRow("SELECT COUNT(*) FROM flows_retired").Scan(&retired); err != nil || retired != 2 {
		t.Fatalf("flows_retired holds %d rows (%v), want 2 (the active flows)", retired, err)
	}
	got, _ := db.Traffic()
	if !gocmp.Equal(got, want) {
		t.Errorf("Traffic() after retention = %v, want %v: deleting flows takes nothing away", got, want)
	}

	// The active flow comes back with its cumulative counters.
	active.PacketsSent, active.BytesSent, active.LastSeen = 12, 1200, at(2*time.Hour)
	mustApply(t, db, c, &Batch{Seq: 2, Flows: []record.Flow{active}})
	want[0].Packets, want[0].Bytes = 18, 1800
	got, _ = db.Traffic()
	if !gocmp.Equal(got, want) {
		t.Errorf("Traffic() after the retired flow's update = %v, want %v (counted once)", got, want)
	}
	if err := db.r.QueryRow("SELECT COUNT(*) FROM flows_retired").Scan(&retired); err != nil || retired != 1 {
		t.Errorf("flows_retired holds %d rows (%v), want 1 (the flow that came back is out)", retired, err)
	}

	// The one that never comes back is forgotten after the capturers'
	// retention (minCapturerRetention); the other is retired again.
	if _, err := db.Retain(t.Context(), now.Add(minCapturerRetention+time.Minute)); err != nil {
		t.Fatal(err)
	}
	var ids []string
	rows, err := db.r.Query("SELECT id FROM flows_retired ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if want := []string{"active"}; !slices.Equal(ids, want) {
		t.Errorf("flows_retired holds %q after %v, want %q", ids, minCapturerRetention, want)
	}
}

// TestDB_Traffic_migration: a database made before the traffic table
// (schema 1) gets totals equal to the flows it holds.
func TestDB_Traffic_migration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	w, err := sql.Open("sqlite", fileURI(path, nil)+"?_pragma=auto_vacuum(INCREMENTAL)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(t.Context(), w, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	for i, f := range []struct {
		proto          int
		dir            string
		packets, bytes int64
	}{{6, "outbound", 10, 1000}, {6, "outbound", 5, 500}, {17, "", 2, 200}, {99, "inbound", 1, 64}} {
		if _, err := w.Exec(`INSERT INTO flows (id, capturer_id, community_id, proto, proto_num, src_ip, src_port,
			dst_ip, dst_port, vlan, first_seen, last_seen, packets_sent, bytes_sent, packets_received, bytes_received,
			packets, bytes, tcp_flags, history, state, direction, end_reason)
			VALUES (?, 1, '', '', ?, '', 0, '', 0, 0, 1, 1, ?, ?, 0, 0, ?, ?, '', '', '', ?, '')`,
			fmt.Sprint(i), f.proto, f.packets, f.bytes, f.packets, f.bytes, f.dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	db := openAt(t, path, Options{Retention: -1, MaxSize: -1})
	checkTraffic(t, db, []TrafficCount{
		{Proto: "99", Direction: "inbound", Packets: 1, Bytes: 64},
		{Proto: "tcp", Direction: "outbound", Packets: 15, Bytes: 1500},
		{Proto: "udp", Direction: "unknown", Packets: 2, Bytes: 200},
	})
}

// TestDB_ApplyBatch_strings: flow ids and text fields of every kind of byte
// are stored and found again as sent (the writer passes them to SQLite
// inside JSON).
func TestDB_ApplyBatch_strings(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	weird := []string{`quote"d`, `back\slash`, "tab\tnewline\n", "ctl\x01\x1f", "\xff\xfeinvalid utf-8", "naïve ☃ 🦈",
		"nul\x00byte", `{"json":[1]}`, "<&>'", strings.Repeat("long", 300)}
	var flows []record.Flow
	for i, s := range weird {
		flows = append(flows, record.Flow{ID: s, CommunityID: s, Proto: "tcp", ProtoNum: 6, SrcIP: s, DstIP: "10.0.0.1",
			State: s, History: s, TCPFlags: s, Direction: s, FirstSeen: ts(0), LastSeen: ts(1), PacketsSent: uint64(i + 1)})
	}
	mustApply(t, db, Capturer{InstanceID: "i"}, &Batch{Seq: 1, Flows: flows})
	// Updates: same state (one statement for the chunk), then a new state
	// and an end (one by one).
	for i := range flows {
		flows[i].PacketsSent += 10
		flows[i].LastSeen = ts(2)
		flows[i].History += "d"
	}
	mustApply(t, db, Capturer{InstanceID: "i"}, &Batch{Seq: 2, Flows: flows})
	for i := range flows {
		flows[i].PacketsSent += 10
		flows[i].State += "!"
		flows[i].EndReason = weird[len(weird)-1-i]
	}
	mustApply(t, db, Capturer{InstanceID: "i"}, &Batch{Seq: 3, Ended: flows})
	for _, want := range flows {
		got, err := db.Flow(t.Context(), want.ID)
		if err != nil {
			t.Errorf("Flow(%q): %v", want.ID, err)
			continue
		}
		want.Direction = got.Direction // not the point here
		if d := gocmp.Diff(want, got); d != "" {
			t.Errorf("Flow(%q) (-sent +stored):\n%s", want.ID, d)
		}
	}
	if n := counts(t, db)["flows"]; n != len(weird) {
		t.Errorf("%d flows stored, want %d", n, len(weird))
	}
}

// TestDB_ApplyBatch_cancelled: a batch whose context has ended is not
// committed, and the writer is usable afterwards.
func TestDB_ApplyBatch_cancelled(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	s := newSim(5, 3000)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ok, err := db.ApplyBatch(ctx, s.cap, s.batch(3000, 0, 0)); ok || err == nil {
		t.Fatalf("ApplyBatch with a cancelled context: applied=%t err=%v", ok, err)
	}
	if n := counts(t, db)["flows"]; n != 0 {
		t.Errorf("%d flows stored by a cancelled batch", n)
	}
	mustApply(t, db, s.cap, s.batch(3000, 0, 0))
	checkTraffic(t, db, flowSums(t, db))
}
