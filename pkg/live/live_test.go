package live

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// clock is a settable clock for State.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func newState(c *clock) *State {
	s := New()
	s.Now = c.Now
	s.Started = c.Now()
	return s
}

func flow(id, proto, dir string, ps, bs, pr, br uint64) record.Flow {
	return record.Flow{
		ID: id, Proto: proto, Direction: dir,
		SrcIP: "10.0.0.1", SrcPort: 40000, DstIP: "10.0.0.2", DstPort: 443,
		PacketsSent: ps, BytesSent: bs, PacketsReceived: pr, BytesReceived: br,
		State: "S1",
	}
}

func TestState_Apply(t *testing.T) {
	c := newClock()
	s := newState(c)

	s.Apply("cap-1", Batch{
		Seq:        1,
		Flows:      []record.Flow{flow("a", "tcp", "outbound", 10, 1000, 8, 5000), flow("b", "udp", "inbound", 1, 100, 0, 0)},
		Samples:    []record.PacketSample{{Timestamp: 1, Protocol: "TCP", Length: 60}, {Timestamp: 2, Protocol: "UDP", Length: 100}},
		Stats:      record.CaptureStats{Packets: 19, Bytes: 6100, KernelReceived: 19, DecodeErrors: map[string]uint64{"truncated": 2}, ActiveFlows: 2, Flows: 2},
		ReceivedAt: c.Now(),
	})
	c.Advance(time.Second)
	s.Apply("cap-1", Batch{
		Seq:        2,
		Flows:      []record.Flow{flow("a", "tcp", "outbound", 12, 1200, 9, 5500)},
		Ended:      []record.Flow{flow("b", "udp", "inbound", 2, 200, 1, 50), flow("c", "icmp", "", 1, 98, 1, 98)},
		Samples:    []record.PacketSample{{Timestamp: 3, Protocol: "ICMP", Length: 98}},
		Stats:      record.CaptureStats{Packets: 27, Bytes: 7144, KernelReceived: 27, DecodeErrors: map[string]uint64{"truncated": 3}, ActiveFlows: 1, Flows: 3},
		ReceivedAt: c.Now().Add(-200 * time.Millisecond),
	})

	snap := s.Snapshot()
	if got, want := snap.TotalPackets, uint64(27); got != want {
		t.Errorf("TotalPackets: got %d, want %d", got, want)
	}
	if got, want := snap.TotalBytes, uint64(7144); got != want {
		t.Errorf("TotalBytes: got %d, want %d", got, want)
	}
	if got, want := snap.ActiveFlows, 1; got != want {
		t.Errorf("ActiveFlows: got %d, want %d", got, want)
	}
	if got, want := snap.Capture.DecodeErrors["truncated"], uint64(3); got != want {
		t.Errorf("decode errors: got %d, want %d", got, want)
	}
	if got, want := snap.IngestLag, 200*time.Millisecond; got != want {
		t.Errorf("IngestLag: got %v, want %v", got, want)
	}
	if snap.Batches != 2 || snap.EndedFlows != 2 || snap.Samples != 3 {
		t.Errorf("Batches, EndedFlows, Samples: got %d %d %d, want 2 2 3", snap.Batches, snap.EndedFlows, snap.Samples)
	}
	// Traffic is the store's (SetTraffic), not counted from the batches.
	if len(snap.Traffic) != 0 {
		t.Errorf("Traffic: got %v, want none before SetTraffic", snap.Traffic)
	}
	if f, ok := s.Flow("a"); !ok || f.PacketsSent != 12 {
		t.Errorf("Flow(a): got %+v %v, want the latest record", f, ok)
	}
	if _, ok := s.Flow("b"); ok {
		t.Errorf("Flow(b): ended flow still active")
	}
	if got := s.RecentSamples(10); len(got) != 3 || got[0].Timestamp != 3 || got[2].Timestamp != 1 {
		t.Errorf("RecentSamples: got %v, want newest first", got)
	}
	if len(snap.Capturers) != 1 || snap.Capturers[0].LastSeq != 2 || !snap.Capturers[0].Connected {
		t.Errorf("Capturers: got %+v", snap.Capturers)
	}
}

func TestState_Apply_doesNotRetainInput(t *testing.T) {
	s := newState(newClock())
	errs := map[string]uint64{"truncated": 1}
	b := Batch{Seq: 1, Flows: []record.Flow{flow("a", "tcp", "", 1, 1, 0, 0)}, Stats: record.CaptureStats{DecodeErrors: errs}}
	s.Apply("x", b)
	b.Flows[0].PacketsSent = 99
	errs["truncated"] = 99
	if f, _ := s.Flow("a"); f.PacketsSent != 1 {
		t.Errorf("flow changed with the caller's slice: %d", f.PacketsSent)
	}
	if got := s.Snapshot().Capture.DecodeErrors["truncated"]; got != 1 {
		t.Errorf("decode errors changed with the caller's map: %d", got)
	}
}

// TestState_Rates shows the rates are a sliding window over what the
// cumulative counters grew by: steady traffic reads its true rate, and a
// burst followed by silence reads zero once the burst is a window old,
// whether or not batches keep arriving.
func TestState_Rates(t *testing.T) {
	for _, keepSending := range []bool{true, false} {
		t.Run(fmt.Sprintf("batches during silence=%v", keepSending), func(t *testing.T) {
			c := newClock()
			s := newState(c)
			s.RateWindow = 10 * time.Second
			var pk, by uint64
			apply := func(seq uint64) {
				s.Apply("cap", Batch{Seq: seq, Stats: record.CaptureStats{Packets: pk, Bytes: by}, ReceivedAt: c.Now()})
			}
			// 20 s of steady traffic: 100 packets and 10 kB per second.
			seq := uint64(1)
			apply(seq)
			for range 20 {
				c.Advance(time.Second)
				pk, by = pk+100, by+10000
				seq++
				apply(seq)
			}
			if st := s.Stats(); st.PacketsPerSecond != 100 || st.BytesPerSecond != 10000 {
				t.Fatalf("steady: got %v pps %v Bps, want 100 and 10000", st.PacketsPerSecond, st.BytesPerSecond)
			}
			// Not an average since start: a burst of 5000 packets in one
			// second.
			c.Advance(time.Second)
			pk, by = pk+5000, by+500000
			seq++
			apply(seq)
			if st := s.Stats(); st.PacketsPerSecond != (900+5000)/10.0 {
				t.Fatalf("burst: got %v pps, want %v", st.PacketsPerSecond, (900+5000)/10.0)
			}
			// Silence.
			for i := 1; i <= 12; i++ {
				c.Advance(time.Second)
				if keepSending {
					seq++
					apply(seq)
				}
				// The window (now-10 s, now] still holds the burst and
				// 9-i seconds of the steady traffic before it.
				st := s.Stats()
				want := float64(5000+max(9-i, 0)*100) / 10
				switch {
				case i < 10 && st.PacketsPerSecond != want:
					t.Fatalf("%d s after the burst: got %v pps, want %v", i, st.PacketsPerSecond, want)
				case i >= 10 && (st.PacketsPerSecond != 0 || st.BytesPerSecond != 0):
					t.Fatalf("%d s after the burst: got %v pps %v Bps, want 0", i, st.PacketsPerSecond, st.BytesPerSecond)
				}
			}
			if st := s.Stats(); st.TotalPackets != pk {
				t.Errorf("TotalPackets: got %d, want %d", st.TotalPackets, pk)
			}
		})
	}
}

// TestState_Rates_baseline: the first batch seen of a capture already
// running (seq > 1, the API server restarted) is a baseline, not a burst.
func TestState_Rates_baseline(t *testing.T) {
	for _, hello := range []bool{false, true} {
		t.Run(fmt.Sprintf("connected first=%v", hello), func(t *testing.T) {
			testRatesBaseline(t, hello)
		})
	}
}

func testRatesBaseline(t *testing.T, hello bool) {
	c := newClock()
	s := newState(c)
	if hello {
		s.SetCapturerConnected("cap", true) // the IPC hello, before any batch
	}
	s.Apply("cap", Batch{Seq: 500, Stats: record.CaptureStats{Packets: 1e9, Bytes: 1e12, KernelDrops: 1000}, ReceivedAt: c.Now()})
	c.Advance(time.Second)
	s.Apply("cap", Batch{Seq: 501, Stats: record.CaptureStats{Packets: 1e9 + 10, Bytes: 1e12 + 1000, KernelDrops: 1000}, ReceivedAt: c.Now()})
	st := s.Stats()
	if st.PacketsPerSecond != 10 || st.BytesPerSecond != 1000 {
		t.Errorf("got %v pps %v Bps, want 10 and 1000", st.PacketsPerSecond, st.BytesPerSecond)
	}
	if st.TotalPackets != 1e9+10 {
		t.Errorf("TotalPackets: got %d, want the capture's cumulative count", st.TotalPackets)
	}
	if h := s.Health(); !h.OK {
		t.Errorf("old kernel drops made health degraded: %v", h.Reasons)
	}
}

func TestState_MaxFlows(t *testing.T) {
	c := newClock()
	s := newState(c)
	s.MaxFlows = 3
	for i := range 5 {
		s.Apply("cap", Batch{Seq: uint64(i + 1), Flows: []record.Flow{flow(fmt.Sprint(i), "tcp", "", 1, 1, 0, 0)}, ReceivedAt: c.Advance(time.Second)})
		if i == 1 || i == 3 {
			// Refresh flow 0, so that the others are evicted before it.
			s.Apply("cap", Batch{Seq: 10, Flows: []record.Flow{flow("0", "tcp", "", 2, 2, 0, 0)}, ReceivedAt: c.Advance(time.Second)})
		}
	}
	snap := s.Snapshot()
	if snap.ViewFlows != 3 || snap.FlowEvictions != 2 {
		t.Fatalf("got %d flows, %d evictions; want 3 and 2", snap.ViewFlows, snap.FlowEvictions)
	}
	for id, want := range map[string]bool{"0": true, "1": false, "2": false, "3": true, "4": true} {
		if _, ok := s.Flow(id); ok != want {
			t.Errorf("flow %s held: got %v, want %v", id, ok, want)
		}
	}
}

func TestState_StaleAfter(t *testing.T) {
	c := newClock()
	s := newState(c)
	s.StaleAfter = time.Minute
	s.Apply("cap", Batch{Seq: 1, Flows: []record.Flow{flow("old", "tcp", "", 1, 1, 0, 0)}, ReceivedAt: c.Now()})
	c.Advance(30 * time.Second)
	s.Apply("cap", Batch{Seq: 2, Flows: []record.Flow{flow("new", "tcp", "", 1, 1, 0, 0)}, ReceivedAt: c.Now()})
	c.Advance(31 * time.Second)
	s.Apply("cap", Batch{Seq: 3, ReceivedAt: c.Now()})
	if _, ok := s.Flow("old"); ok {
		t.Errorf("stale flow still held")
	}
	if _, ok := s.Flow("new"); !ok {
		t.Errorf("fresh flow removed")
	}
	if got := s.Snapshot().StaleFlows; got != 1 {
		t.Errorf("StaleFlows: got %d, want 1", got)
	}
}

func TestState_RecentSamples_bounded(t *testing.T) {
	s := newState(newClock())
	s.HistorySize = 4
	var all []record.PacketSample
	for i := range 10 {
		all = append(all, record.PacketSample{Timestamp: int64(i)})
	}
	s.Apply("cap", Batch{Seq: 1, Samples: all[:3]})
	s.Apply("cap", Batch{Seq: 2, Samples: all[3:]})
	got := s.RecentSamples(100)
	var ts []int64
	for _, p := range got {
		ts = append(ts, p.Timestamp)
	}
	if want := []int64{9, 8, 7, 6}; !slices.Equal(ts, want) {
		t.Errorf("got %v, want %v", ts, want)
	}
	if got := s.RecentSamples(2); len(got) != 2 || got[0].Timestamp != 9 {
		t.Errorf("RecentSamples(2): got %v", got)
	}
}

func TestState_TopFlows(t *testing.T) {
	s := newState(newClock())
	var flows []record.Flow
	for i := range 100 {
		// Packets i%10, so ties are broken by bytes (i) then id.
		flows = append(flows, flow(fmt.Sprintf("%03d", i), "tcp", "", uint64(i%10), uint64(i), 0, 0))
	}
	s.Apply("cap", Batch{Seq: 1, Flows: flows})
	got := s.TopFlows(5)
	var ids []string
	for _, f := range got {
		ids = append(ids, f.ID)
	}
	if want := []string{"099", "089", "079", "069", "059"}; !slices.Equal(ids, want) {
		t.Errorf("got %v, want %v", ids, want)
	}
	if got := s.TopFlows(1000); len(got) != 100 {
		t.Errorf("TopFlows(1000): got %d, want all 100", len(got))
	}
}

// TestState_MaxCapturers: retiring an instance keeps its counters in the
// totals, so they never go down.
func TestState_MaxCapturers(t *testing.T) {
	c := newClock()
	s := newState(c)
	s.MaxCapturers = 2
	var last uint64
	for i := range 5 {
		s.Apply(fmt.Sprint("cap-", i), Batch{Seq: 1, Stats: record.CaptureStats{Packets: 10, Bytes: 100, DecodeErrors: map[string]uint64{"x": 1}}, ReceivedAt: c.Advance(time.Second)})
		snap := s.Snapshot()
		if snap.TotalPackets < last {
			t.Fatalf("TotalPackets went down: %d after %d", snap.TotalPackets, last)
		}
		last = snap.TotalPackets
	}
	snap := s.Snapshot()
	if snap.TotalPackets != 50 || snap.Capture.Packets != 50 || snap.Capture.DecodeErrors["x"] != 5 {
		t.Errorf("totals: got %d packets (%d), %v; want 50 and x=5", snap.TotalPackets, snap.Capture.Packets, snap.Capture.DecodeErrors)
	}
	if len(snap.Capturers) != 2 || snap.RetiredCapturers != 3 || snap.Health.CapturersSeen != 5 {
		t.Errorf("got %d tracked, %d retired, %d seen; want 2, 3, 5", len(snap.Capturers), snap.RetiredCapturers, snap.Health.CapturersSeen)
	}
}

func TestState_Health(t *testing.T) {
	c := newClock()
	s := newState(c)
	s.SilentAfter = 5 * time.Second
	s.DropWindow = time.Minute

	check := func(name string, wantOK bool, wantReason string) {
		t.Helper()
		h := s.Health()
		if h.OK != wantOK || (wantReason != "" && !strings.Contains(strings.Join(h.Reasons, "; "), wantReason)) {
			t.Errorf("%s: got ok=%v reasons=%q, want ok=%v with %q", name, h.OK, h.Reasons, wantOK, wantReason)
		}
		if h.OK != (len(h.Reasons) == 0) {
			t.Errorf("%s: OK=%v with reasons %q", name, h.OK, h.Reasons)
		}
	}
	check("fresh", false, "no capturer has connected yet")

	s.SetCapturerConnected("cap", true)
	check("connected, no batch", false, "has sent no batch yet")

	seq := uint64(0)
	batch := func(drops uint64) {
		seq++
		s.Apply("cap", Batch{Seq: seq, Stats: record.CaptureStats{KernelDrops: drops}, ReceivedAt: c.Now()})
	}
	batch(0)
	check("batch", true, "")

	c.Advance(5 * time.Second)
	check("5 s silent", true, "")
	c.Advance(time.Second)
	check("6 s silent", false, "capturer silent for 6s")

	batch(0)
	check("back", true, "")

	batch(7)
	check("drops", false, "kernel dropped 7 packets in the last 1m0s")
	for range 59 {
		c.Advance(time.Second)
		batch(7)
	}
	check("59 s after the drops", false, "kernel dropped 7 packets")
	c.Advance(time.Second)
	batch(7)
	check("a minute after the drops", true, "")

	s.SetStoreError(errors.New("database or disk is full"))
	check("store error", false, "store failing: database or disk is full")
	s.SetStoreError(nil)
	check("store recovered", true, "")
	if got := s.Snapshot().StoreErrors; got != 1 {
		t.Errorf("StoreErrors: got %d, want 1", got)
	}

	// A reconnection: the new connection opens before the old one
	// closes.
	s.SetCapturerConnected("cap", true)
	s.SetCapturerConnected("cap", false)
	check("reconnected", true, "")
	s.SetCapturerConnected("cap", false)
	check("disconnected", false, "no capturer connected")
	s.SetCapturerConnected("cap", false) // more closes than opens: no harm
	batch(0)
	check("a batch does not make a closed connection open", false, "no capturer connected")
	s.SetCapturerConnected("cap", true)
	check("connected again", true, "")
}

// TestState_HealthFinished: an instance that read its source to the end
// (SetCapturerFinished) and went away is a finished import, not a lost
// capturer; one that went away without finishing still is.
func TestState_HealthFinished(t *testing.T) {
	type step func(s *State, c *clock)
	connect := func(id string) step { return func(s *State, _ *clock) { s.SetCapturerConnected(id, true) } }
	disconnect := func(id string) step { return func(s *State, _ *clock) { s.SetCapturerConnected(id, false) } }
	finish := func(id string) step { return func(s *State, _ *clock) { s.SetCapturerFinished(id) } }
	batch := func(id string) step {
		return func(s *State, c *clock) {
			s.Apply(id, Batch{Seq: s.AppliedSeq(id) + 1, Stats: record.CaptureStats{Packets: 40, Bytes: 4000}, ReceivedAt: c.Now()})
		}
	}
	advance := func(d time.Duration) step { return func(_ *State, c *clock) { c.Advance(d) } }
	// imported is an import that read its file to the end: the last batch
	// committed, then the connection closed.
	imported := func(id string) []step { return []step{connect(id), batch(id), batch(id), finish(id), disconnect(id)} }
	seq := func(parts ...[]step) []step { return slices.Concat(parts...) }

	tests := []struct {
		name        string
		steps       []step
		wantReasons []string
		// finished and connected are the instances Snapshot reports so.
		finished, connected []string
	}{
		{"finished import", imported("imp"), nil, []string{"imp"}, nil},
		{"finished import, an hour later", seq(imported("imp"), []step{advance(time.Hour)}), nil, []string{"imp"}, nil},
		{"finished, not yet disconnected", []step{connect("imp"), batch("imp"), finish("imp")}, nil, []string{"imp"}, []string{"imp"}},
		{"disconnected without done", []step{connect("imp"), batch("imp"), disconnect("imp")},
			[]string{"no capturer connected"}, nil, nil},
		{"finished import, then a live capturer connected", seq(imported("imp"), []step{connect("live"), batch("live")}),
			nil, []string{"imp"}, []string{"live"}},
		{"finished import, then a live capturer that disconnects",
			seq(imported("imp"), []step{connect("live"), batch("live"), disconnect("live")}),
			[]string{"no capturer connected"}, []string{"imp"}, nil},
		{"finished import, then a live capturer silent", seq(imported("imp"), []step{connect("live"), batch("live"), advance(6 * time.Second)}),
			[]string{"capturer silent for 6s (more than 5s)"}, []string{"imp"}, []string{"live"}},
		{"interrupted import, then another finished", seq([]step{connect("cut"), batch("cut"), disconnect("cut")}, imported("imp")),
			[]string{"no capturer connected"}, []string{"imp"}, nil},
		{"two finished imports", seq(imported("a"), imported("b")), nil, []string{"a", "b"}, nil},
		// The last batch committed, the ack lost: the capturer reconnects to
		// learn it, and leaves.
		{"finished, reconnected and gone", seq(imported("imp"), []step{connect("imp"), disconnect("imp")}), nil, []string{"imp"}, nil},
		{"finished import, store failing", seq(imported("imp"), []step{func(s *State, _ *clock) { s.SetStoreError(errors.New("disk full")) }}),
			[]string{"store failing: disk full"}, []string{"imp"}, nil},
		// Without SetCapturerConnected (no connection observer), an instance
		// counts as connected from its first batch until it finishes.
		{"untracked, finished", []step{batch("imp"), finish("imp")}, nil, []string{"imp"}, nil},
		{"untracked, silent", []step{batch("imp"), advance(6 * time.Second)}, []string{"capturer silent for 6s (more than 5s)"}, nil, []string{"imp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			s := newState(c)
			s.SilentAfter = 5 * time.Second
			for _, st := range tt.steps {
				st(s, c)
			}
			snap := s.Snapshot()
			h := snap.Health
			if !slices.Equal(h.Reasons, tt.wantReasons) || h.OK != (len(tt.wantReasons) == 0) {
				t.Errorf("health: got ok=%v reasons %q, want reasons %q", h.OK, h.Reasons, tt.wantReasons)
			}
			var finished, connected []string
			for _, cc := range snap.Capturers {
				if cc.Finished {
					finished = append(finished, cc.InstanceID)
				}
				if cc.Connected {
					connected = append(connected, cc.InstanceID)
				}
				if cc.Stats.Packets != 40 || cc.Batches == 0 {
					t.Errorf("capturer %s: %d batches, stats %+v; want its batches' stats kept", cc.InstanceID, cc.Batches, cc.Stats)
				}
			}
			if !slices.Equal(finished, tt.finished) || !slices.Equal(connected, tt.connected) {
				t.Errorf("finished %q, connected %q; want %q, %q", finished, connected, tt.finished, tt.connected)
			}
			if h.CapturersConnected != len(tt.connected) {
				t.Errorf("CapturersConnected %d, want %d", h.CapturersConnected, len(tt.connected))
			}
		})
	}
}

// TestState_concurrent applies batches from several goroutines while
// readers read (run with -race).
func TestState_concurrent(t *testing.T) {
	s := New()
	s.MaxFlows = 100
	sub, err := s.Hub.Subscribe(func(*record.Flow) bool { return true }, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				s.Apply(fmt.Sprint("cap-", w), Batch{
					Seq:     uint64(i + 1),
					Flows:   []record.Flow{flow(fmt.Sprint(w, "-", i%150), "tcp", "inbound", uint64(i), uint64(i), 0, 0)},
					Ended:   []record.Flow{flow(fmt.Sprint(w, "-", (i+75)%150), "tcp", "inbound", uint64(i), uint64(i), 0, 0)},
					Samples: []record.PacketSample{{Timestamp: int64(i)}},
					Stats:   record.CaptureStats{Packets: uint64(i), DecodeErrors: map[string]uint64{"x": uint64(i)}},
				})
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			if st := s.Hub.Stats(); st.Sent+st.Dropped == 0 {
				t.Errorf("hub saw nothing: %+v", st)
			}
			return
		default:
		}
		_ = s.Snapshot()
		_ = s.TopFlows(10)
		_ = s.RecentSamples(10)
		sub.Take(nil)
	}
}

// TestState_SetTraffic: the snapshot carries the latest totals set, sorted,
// as a copy; older versions are ignored, so the totals never go back; the
// number of pairs is bounded.
func TestState_SetTraffic(t *testing.T) {
	s := newState(newClock())
	in := []TrafficCount{
		{TrafficKey{"udp", "inbound"}, 3, 250},
		{TrafficKey{"icmp", "unknown"}, 2, 196},
		{TrafficKey{"tcp", "outbound"}, 21, 6700},
	}
	v0 := s.Version()
	s.SetTraffic(2, in)
	if s.Version() == v0 {
		t.Errorf("Version unchanged by SetTraffic")
	}
	want := []TrafficCount{in[1], in[2], in[0]}
	in[0].Packets = 99 // the state holds a copy
	if got := s.Snapshot().Traffic; !slices.Equal(got, want) {
		t.Errorf("Traffic: got %v, want %v", got, want)
	}
	s.Snapshot().Traffic[0].Packets = 99 // so does the snapshot
	s.SetTraffic(1, []TrafficCount{{TrafficKey{"tcp", "outbound"}, 1, 1}})
	if got := s.Snapshot().Traffic; !slices.Equal(got, want) {
		t.Errorf("Traffic after an older version: got %v, want %v", got, want)
	}
	newer := []TrafficCount{{TrafficKey{"tcp", "outbound"}, 22, 6800}}
	s.SetTraffic(3, newer)
	if got := s.Snapshot().Traffic; !slices.Equal(got, newer) {
		t.Errorf("Traffic after a newer version: got %v, want %v", got, newer)
	}

	many := make([]TrafficCount, 2*maxTrafficKeys)
	for i := range many {
		many[i] = TrafficCount{TrafficKey: TrafficKey{Proto: fmt.Sprint(i), Direction: "unknown"}, Packets: 1}
	}
	s.SetTraffic(4, many)
	if got := len(s.Snapshot().Traffic); got != maxTrafficKeys {
		t.Errorf("%d pairs kept, want %d", got, maxTrafficKeys)
	}
}

// TestState_Apply_evictionReusesEntries: the live view holds at most
// MaxFlows, the most recently updated, whatever the churn.
func TestState_Apply_evictionReusesEntries(t *testing.T) {
	c := newClock()
	s := newState(c)
	s.MaxFlows = 3
	for k := range 10 {
		s.Apply("cap", Batch{Seq: uint64(k + 1), Flows: []record.Flow{flow(fmt.Sprint(k), "tcp", "", uint64(k), 1, 0, 0)}, ReceivedAt: c.Now()})
	}
	for k := range 10 {
		f, ok := s.Flow(fmt.Sprint(k))
		if want := k >= 7; ok != want || ok && f.PacketsSent != uint64(k) {
			t.Errorf("Flow(%d) = %+v, %v; want held %v", k, f, ok, want)
		}
	}
	if snap := s.Snapshot(); snap.ViewFlows != 3 || snap.FlowEvictions != 7 {
		t.Errorf("ViewFlows, FlowEvictions = %d, %d; want 3, 7", snap.ViewFlows, snap.FlowEvictions)
	}
}
