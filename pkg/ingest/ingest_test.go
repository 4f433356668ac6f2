package ingest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/api"
	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/store"
)

// mountTmpfs mounts a tmpfs of the given size under a temporary directory
// and unmounts it at cleanup. It skips the test unless it runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount -t tmpfs)")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			return path
		}
	}
}

// testBatch is batch k: 40 new flows and 100 packet samples, all unique.
func testBatch(k int) *ipc.Batch {
	b := &ipc.Batch{Stats: record.CaptureStats{Packets: uint64(1000 * k), Bytes: uint64(100000 * k)}}
	t0 := time.Date(2026, 5, 1, 0, 0, k, 0, time.UTC)
	for i := range 40 {
		b.Flows = append(b.Flows, record.Flow{
			ID: fmt.Sprintf("%08x%08x", k, i), Proto: "tcp", ProtoNum: 6,
			SrcIP: fmt.Sprintf("10.1.%d.%d", k%256, i), SrcPort: uint16(40000 + i), DstIP: "10.0.0.2", DstPort: 443,
			FirstSeen: record.Time{Time: t0}, LastSeen: record.Time{Time: t0.Add(time.Duration(i) * time.Millisecond)},
			PacketsSent: uint64(k + i + 1), BytesSent: uint64(100 * (k + i + 1)), State: "S1", History: "ShAD",
			CommunityID: strings.Repeat("c", 30),
		})
	}
	for i := range 100 {
		b.Samples = append(b.Samples, record.PacketSample{Timestamp: t0.UnixMilli() + int64(i), SrcIP: "10.0.0.2",
			DstIP: "10.1.0.1", SrcPort: 443, DstPort: uint16(40000 + i), Protocol: "tcp", Length: uint32(k*1000 + i)})
	}
	return b
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIngest_StoreFull runs a real ipc client and server with the ingest
// over a real SQLite file on a small tmpfs, and fills the tmpfs: the batch
// the store refuses stays unacknowledged on an open connection while the
// ingest retries it, health turns degraded naming the store's error, the
// live view shows the held batch, the capturer's reconnects (AckTimeout)
// take the held batch over without applying it twice; once there is room
// again every batch is committed, exactly once, and health recovers.
func TestIngest_StoreFull(t *testing.T) {
	dir := mountTmpfs(t, "8m")
	ctx := t.Context()
	db, err := store.Open(ctx, filepath.Join(dir, "traffic.db"), store.Options{MaxSize: -1, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lv := live.New()
	in := &Ingest{Store: db, Live: lv, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	sock := filepath.Join(t.TempDir(), "ipc.sock")
	srv := &ipc.Server{Path: sock, Handler: in}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	cl := &ipc.Client{Path: sock, AckTimeout: 500 * time.Millisecond, MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, MaxPendingBytes: 64 << 20}
	if err := cl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cl.Close(context.Background())
	id := cl.Stats().InstanceID

	sent := map[string]record.Flow{}
	samples := 0
	k := 0
	send := func() {
		t.Helper()
		k++
		b := testBatch(k)
		for _, f := range b.Flows {
			sent[f.ID] = f
		}
		samples += len(b.Samples)
		if err := cl.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		send()
	}
	waitFor(t, "the first batches to be acknowledged", 10*time.Second, func() bool { return cl.Stats().AckedSeq == 5 })

	filler := fill(t, dir)
	// Batches until one is refused (the WAL may take a few in its free
	// frames first).
	waitFor(t, "the store to refuse a batch", 20*time.Second, func() bool {
		if lv.Health().StoreError != "" {
			return true
		}
		if st := cl.Stats(); st.LastSeq == st.AckedSeq {
			send()
		}
		return false
	})
	h := lv.Health()
	if h.OK || !strings.Contains(strings.Join(h.Reasons, "; "), "store failing") || !strings.Contains(h.StoreError, "full") {
		t.Errorf("health = %+v; want degraded, naming the full store", h)
	}
	t.Logf("health while full: %q", h.Reasons)
	held := cl.Stats().AckedSeq + 1
	// The live view shows the held batch; the store does not have it.
	waitFor(t, "the live view to apply the held batch", 5*time.Second, func() bool { return lv.AppliedSeq(id) >= held })
	if last, err := db.LastSeq(ctx, id); err != nil || last >= held {
		t.Errorf("store LastSeq = %d, %v; want < %d", last, err, held)
	}
	if got, want := lv.Stats().TotalPackets, uint64(1000*held); got != want {
		t.Errorf("live total_packets = %d, want %d (the held batch's)", got, want)
	}
	// More batches arrive while full, and the capturer reconnects (its
	// AckTimeout is short): the new connection takes the instance over.
	for range 3 {
		send()
	}
	sessions := cl.Stats().Sessions
	waitFor(t, "the capturer to reconnect while the store is full", 10*time.Second, func() bool { return cl.Stats().Sessions > sessions })
	if st := cl.Stats(); st.AckedSeq >= held {
		t.Fatalf("batch %d acknowledged while the store was full (client %+v)", held, st)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	last := cl.Stats().LastSeq
	waitFor(t, "every batch to be acknowledged once there is room", 30*time.Second, func() bool { return cl.Stats().AckedSeq == last })
	if h := lv.Health(); h.StoreError != "" {
		t.Errorf("store error still reported after recovery: %q", h.StoreError)
	}
	// The held batch is committed by the Apply that retried it, or by the
	// one a reconnect brought (Retried counts the former only).
	st := in.Stats()
	if st.Failures == 0 {
		t.Errorf("ingest stats %+v: want refused commits counted", st)
	}
	t.Logf("ingest stats %+v", st)
	if ss := srv.Stats(); ss.ApplyErrors != 0 {
		t.Errorf("ipc server stats %+v: a refused store closed a connection", ss)
	}

	// Everything sent is stored, once.
	if got, err := db.LastSeq(ctx, id); err != nil || got != last {
		t.Errorf("store LastSeq = %d, %v; want %d", got, err, last)
	}
	n := 0
	if err := db.EachFlow(ctx, store.FlowQuery{}, func(f *record.Flow) error {
		n++
		if w, ok := sent[f.ID]; !ok || w.PacketsSent != f.PacketsSent || w.BytesSent != f.BytesSent {
			return fmt.Errorf("flow %s: stored %d packets, sent %+v", f.ID, f.PacketsSent, w)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if n != len(sent) {
		t.Errorf("%d flows stored, %d sent", n, len(sent))
	}
	hist, err := db.History(ctx, store.MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	if want := min(samples, store.MaxLimit); len(hist) != want {
		t.Errorf("%d samples in the history, want %d", len(hist), want)
	}
	var stored int
	ro, err := sql.Open("sqlite", "file:"+db.Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.QueryRow("SELECT COUNT(*) FROM packets").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != samples {
		t.Errorf("%d samples stored, %d sent", stored, samples)
	}
	seen := map[uint32]bool{}
	for _, s := range hist {
		if seen[s.Length] {
			t.Errorf("sample %d stored twice", s.Length)
		}
		seen[s.Length] = true
	}
	// The live view applied each batch once: no sample twice in its ring.
	seen = map[uint32]bool{}
	for _, s := range lv.RecentSamples(live.DefaultHistorySize) {
		if seen[s.Length] {
			t.Errorf("sample %d twice in the live view", s.Length)
		}
		seen[s.Length] = true
	}
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Error(err)
	}
}

// trafficSums returns the packets and bytes of the flows stored, summed by
// protocol and direction (as /metrics labels them), read through EachFlow
// (what /api/flows serves).
func trafficSums(t *testing.T, db *store.DB) map[live.TrafficKey][2]uint64 {
	t.Helper()
	sums := map[live.TrafficKey][2]uint64{}
	if err := db.EachFlow(t.Context(), store.FlowQuery{}, func(f *record.Flow) error {
		k := live.TrafficKey{Proto: f.Proto, Direction: f.Direction}
		switch k.Direction {
		case record.DirInbound, record.DirOutbound, record.DirInternal:
		default:
			k.Direction = "unknown"
		}
		s := sums[k]
		sums[k] = [2]uint64{s[0] + f.PacketsSent + f.PacketsReceived, s[1] + f.BytesSent + f.BytesReceived}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return sums
}

// liveTraffic returns the live view's traffic totals (what /metrics
// serves as lightshark_traffic_packets_total and _bytes_total).
func liveTraffic(lv *live.State) map[live.TrafficKey][2]uint64 {
	out := map[live.TrafficKey][2]uint64{}
	for _, c := range lv.Snapshot().Traffic {
		out[c.TrafficKey] = [2]uint64{c.Packets, c.Bytes}
	}
	return out
}

// TestIngest_TrafficExact: the traffic totals equal the sums over the
// stored flows, whatever the live view holds: flows that leave it (its
// bound is 8 here) and update again, many times, count once; a resent
// batch adds nothing; and the totals survive a restart of the API server.
func TestIngest_TrafficExact(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "traffic.db")
	db, err := store.Open(ctx, path, store.Options{MaxSize: -1, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	lv := live.New()
	lv.MaxFlows = 8
	in := &Ingest{Store: db, Live: lv}
	peer := ipc.Peer{Hello: ipc.Hello{InstanceID: "cap-1"}}
	in.Connected(peer)

	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	flows := make([]record.Flow, 40)
	for i := range flows {
		f := &flows[i]
		f.ID, f.Proto, f.ProtoNum = fmt.Sprintf("flow-%02d", i), "tcp", 6
		if i%4 == 3 {
			f.Proto, f.ProtoNum = "udp", 17
		}
		f.Direction = []string{record.DirOutbound, record.DirInbound, ""}[i%3]
		f.SrcIP, f.DstIP, f.State = "10.0.0.1", fmt.Sprintf("10.0.1.%d", i), "S1"
		f.FirstSeen = record.Time{Time: t0}
	}
	var batches []*ipc.Batch
	for k := 1; k <= 30; k++ {
		b := &ipc.Batch{Seq: uint64(k)}
		for i := range flows {
			// Every flow grows each batch: the live view keeps 8 of the
			// 40, so each flow leaves it and comes back, 30 times.
			f := &flows[i]
			f.PacketsSent += uint64(1 + i%5)
			f.BytesSent += uint64(100 * (1 + i%5))
			f.PacketsReceived += uint64(i % 3)
			f.BytesReceived += uint64(60 * (i % 3))
			f.LastSeen = record.Time{Time: t0.Add(time.Duration(k) * time.Second)}
			b.Flows = append(b.Flows, *f)
		}
		if err := in.Apply(ctx, peer, b); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, b)
	}
	want := trafficSums(t, db)
	if len(want) != 6 {
		t.Fatalf("the flows stored make %d proto/direction pairs, want 6: %v", len(want), want)
	}
	if got := liveTraffic(lv); !reflect.DeepEqual(got, want) {
		t.Errorf("traffic totals after 30 batches:\n got %v\nwant %v (the sums over the stored flows)", got, want)
	}
	if ev := lv.Snapshot().FlowEvictions; ev == 0 {
		t.Errorf("the live view evicted no flow: the test does not test what it says")
	}

	// A resent batch (its acknowledgement lost) is a duplicate: nothing
	// changes.
	if err := in.Apply(ctx, peer, batches[len(batches)-1]); err != nil {
		t.Fatal(err)
	}
	if got := liveTraffic(lv); !reflect.DeepEqual(got, want) {
		t.Errorf("traffic totals after a resent batch:\n got %v\nwant %v", got, want)
	}

	// The API server restarts: the totals come back from the store, in
	// the live view as soon as the capturer connects.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(ctx, path, store.Options{MaxSize: -1, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	lv = live.New()
	in = &Ingest{Store: db, Live: lv}
	in.Connected(peer)
	if got := liveTraffic(lv); !reflect.DeepEqual(got, want) {
		t.Errorf("traffic totals after a restart:\n got %v\nwant %v", got, want)
	}
}

// apiHandler returns the real API's handler over lv, closed at cleanup.
func apiHandler(t *testing.T, lv *live.State) http.Handler {
	s := &api.Server{Live: lv}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s.Handler()
}

// getHealth is GET /api/health from the API handler web: the response,
// and the raw JSON of its first capturer.
func getHealth(t *testing.T, web http.Handler) (api.HealthResponse, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	web.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/health", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/health: %d %s", rec.Code, rec.Body)
	}
	var h api.HealthResponse
	var raw struct {
		Capturers []map[string]any `json:"capturers"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || len(raw.Capturers) == 0 {
		t.Fatalf("GET /api/health: %v, capturers %v", err, raw.Capturers)
	}
	return h, raw.Capturers[0]
}

// capturerStatus returns the /api/health entry of instance id.
func capturerStatus(t *testing.T, h api.HealthResponse, id string) api.CapturerStatus {
	t.Helper()
	for _, c := range h.Capturers {
		if c.InstanceID == id {
			return c
		}
	}
	t.Fatalf("capturer %s not in /api/health: %+v", id, h.Capturers)
	return api.CapturerStatus{}
}

// TestIngest_DoneFinishesTheInstance runs a real ipc client and server
// with the ingest over a real SQLite file, and reads /api/health from the
// real API handler: an import whose last batch carries Done, once gone,
// leaves health ok with the instance finished (its stats kept); a capturer
// that goes away without Done makes it degraded; and a Done batch that a
// restarted API server finds already committed still finishes the
// instance.
func TestIngest_DoneFinishesTheInstance(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "traffic.db")
	db, err := store.Open(ctx, path, store.Options{MaxSize: -1, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	lv := live.New()
	in := &Ingest{Store: db, Live: lv}
	sock := filepath.Join(t.TempDir(), "ipc.sock")
	srv := &ipc.Server{Path: sock, Handler: in}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	web := apiHandler(t, lv)

	// capture sends batches 1..n, the last with Done when done, closes the
	// client once all are acknowledged, and waits until the API server
	// has seen the connection close. It returns the instance id.
	capture := func(first, n int, done bool) string {
		t.Helper()
		cl := &ipc.Client{Path: sock, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
		if err := cl.Start(ctx); err != nil {
			t.Fatal(err)
		}
		id := cl.Stats().InstanceID
		for k := first; k < first+n; k++ {
			b := testBatch(k)
			b.Done = done && k == first+n-1
			if err := cl.Send(b); err != nil {
				t.Fatal(err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := cl.Close(cctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the API server to see the capturer go", 10*time.Second, func() bool {
			h, _ := getHealth(t, web)
			return h.CapturersConnected == 0 && capturerStatus(t, h, id).Batches == uint64(n)
		})
		return id
	}

	imp := capture(1, 3, true)
	h, raw := getHealth(t, web)
	c := capturerStatus(t, h, imp)
	if h.Status != "ok" || len(h.Reasons) != 0 {
		t.Errorf("after a finished import: status %q, reasons %q; want ok, none", h.Status, h.Reasons)
	}
	if !c.Finished || c.Connected || c.LastSeq != 3 || c.Stats.Packets != 3000 {
		t.Errorf("the import's capturer: %+v; want finished, not connected, last_seq 3, 3000 packets", c)
	}
	if raw["finished"] != true || raw["connected"] != false {
		t.Errorf("capturers[0] JSON: finished %#v, connected %#v; want true, false", raw["finished"], raw["connected"])
	}

	// A live capture that goes away without Done: degraded.
	lost := capture(10, 2, false)
	h, _ = getHealth(t, web)
	if h.Status != "degraded" || !slices.Equal(h.Reasons, []string{"no capturer connected"}) {
		t.Errorf("after a capturer went away without done: status %q, reasons %q; want degraded, no capturer connected", h.Status, h.Reasons)
	}
	if c := capturerStatus(t, h, lost); c.Finished {
		t.Errorf("the lost capturer: %+v; want not finished", c)
	}
	if c := capturerStatus(t, h, imp); !c.Finished {
		t.Errorf("the import's capturer: %+v; want still finished", c)
	}

	// The API server restarts after the import's last batch was committed
	// but before its ack arrived: the capturer resends it, a duplicate,
	// which still finishes the instance.
	lv2 := live.New()
	in2 := &Ingest{Store: db, Live: lv2}
	peer := ipc.Peer{Hello: ipc.Hello{InstanceID: imp}}
	in2.Connected(peer)
	last := testBatch(3)
	last.Seq, last.Done = 3, true
	if err := in2.Apply(ctx, peer, last); err != nil {
		t.Fatal(err)
	}
	in2.Disconnected(peer)
	if st := in2.Stats(); st.Duplicates != 1 {
		t.Fatalf("ingest stats %+v: want the resent batch found a duplicate", st)
	}
	h, _ = getHealth(t, apiHandler(t, lv2))
	if c := capturerStatus(t, h, imp); h.Status != "ok" || !c.Finished {
		t.Errorf("after a resent done batch: status %q %q, capturer %+v; want ok, finished", h.Status, h.Reasons, c)
	}
}
