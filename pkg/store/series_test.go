package store

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// seriesT0 is on a boundary of every step the tests use (an hour).
var seriesT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

var seriesCap = Capturer{InstanceID: "series", Hostname: "h", Software: "test", Interface: "eth0", LinkType: 1}

// sflow builds a flow record: proto by number, from first to last seconds
// after seriesT0, with bytes and packets split between the directions.
func sflow(id string, proto uint8, dir, src, dst string, first, last float64, packets, bytes uint64) record.Flow {
	at := func(s float64) record.Time {
		return record.Time{Time: seriesT0.Add(time.Duration(s * float64(time.Second)))}
	}
	return record.Flow{
		ID: id, CommunityID: "1:" + id, Proto: record.ProtoName(proto), ProtoNum: proto,
		SrcIP: src, SrcPort: 40000, DstIP: dst, DstPort: 443, FirstSeen: at(first), LastSeen: at(last),
		PacketsSent: packets - packets/3, PacketsReceived: packets / 3,
		BytesSent: bytes - bytes/4, BytesReceived: bytes / 4,
		State: "SF", Direction: dir,
	}
}

// applyFlows writes the flows as batches of at most 5000.
func applyFlows(tb testing.TB, db *DB, seq *uint64, flows []record.Flow) {
	tb.Helper()
	for len(flows) > 0 {
		n := min(len(flows), 5000)
		*seq++
		mustApply(tb, db, seriesCap, &Batch{Seq: *seq, Flows: flows[:n], ReceivedAt: seriesT0})
		flows = flows[n:]
	}
}

// series runs q and returns the series by key, failing on error.
func series(tb testing.TB, db *DB, q SeriesQuery) (*SeriesResult, map[string]Series) {
	tb.Helper()
	res, err := db.Series(tb.Context(), q)
	if err != nil {
		tb.Fatalf("Series(%+v): %v", q, err)
	}
	m := make(map[string]Series)
	for _, s := range res.Series {
		if len(s.Values) != q.Buckets {
			tb.Errorf("series %q: %d values, want %d", s.Key, len(s.Values), q.Buckets)
		}
		var sum uint64
		for _, v := range s.Values {
			sum += v
		}
		if sum != s.Total {
			tb.Errorf("series %q: values sum to %d, total %d", s.Key, sum, s.Total)
		}
		m[s.Key] = s
	}
	if !slices.IsSortedFunc(res.Series, func(a, b Series) int { return -cmpU(a.Total, b.Total) }) {
		tb.Errorf("series not sorted by total: %+v", res.Series)
	}
	return res, m
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func wantValues(tb testing.TB, m map[string]Series, key string, want []uint64) {
	tb.Helper()
	got := m[key].Values
	if len(want) == 0 {
		if _, ok := m[key]; ok {
			tb.Errorf("series %q: got %v, want none", key, got)
		}
		return
	}
	if !slices.Equal(got, want) {
		tb.Errorf("series %q: got %v, want %v", key, got, want)
	}
}

// TestDB_Series_FlowsSpread: without windows each flow is spread evenly
// over [first_seen, last_seen], clipped to the range; the values below are
// worked out by hand from ⌊v·(t-first)/(last-first)⌋.
func TestDB_Series_FlowsSpread(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	var seq uint64
	applyFlows(t, db, &seq, []record.Flow{
		// 1200 bytes over [0, 120]: 600 per minute.
		sflow("a", 6, record.DirOutbound, "10.0.0.1", "1.1.1.1", 0, 120, 12, 1200),
		// 1000 bytes over [30, 210]: 166 by 60, 833 by 180, so
		// buckets 166, (833-166=667 over two: 334, 333), 167.
		sflow("c", 6, record.DirOutbound, "10.0.0.1", "1.1.1.2", 30, 210, 10, 1000),
		// All at one instant: one bucket.
		sflow("b", 17, record.DirOutbound, "10.0.0.1", "8.8.8.8", 150, 150, 1, 77),
		// Half before the range: 50 of its 100 bytes are in it.
		sflow("e", 1, record.DirOutbound, "10.0.0.1", "9.9.9.9", -60, 60, 2, 100),
		// Wholly before, and wholly after the range.
		sflow("d", 17, record.DirOutbound, "10.0.0.1", "8.8.4.4", -300, -200, 5, 500),
		sflow("f", 17, record.DirOutbound, "10.0.0.1", "8.8.4.4", 600, 700, 5, 500),
	})
	res, m := series(t, db, SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 10})
	if res.Source != SourceFlows || res.Exact {
		t.Errorf("source %q exact %v, want flows, false", res.Source, res.Exact)
	}
	wantValues(t, m, "tcp", []uint64{600 + 166, 600 + 334, 333, 167, 0, 0, 0, 0, 0, 0})
	wantValues(t, m, "udp", []uint64{0, 0, 77, 0, 0, 0, 0, 0, 0, 0})
	wantValues(t, m, "icmp", []uint64{50, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if len(m) != 3 {
		t.Errorf("keys: got %d (%v), want 3", len(m), res.Series)
	}
	if got := res.Series[0].Key; got != "tcp" {
		t.Errorf("first series %q, want tcp", got)
	}

	// Packets: a's 12 over two minutes, c's 10: ⌊10·30/180⌋=1 by 60,
	// ⌊10·150/180⌋=8 by 180: 1, (7 over two: 4, 3), 2.
	_, m = series(t, db, SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 4, Metric: SeriesPackets})
	wantValues(t, m, "tcp", []uint64{6 + 1, 6 + 4, 3, 2})
	wantValues(t, m, "udp", []uint64{0, 0, 1, 0})
	wantValues(t, m, "icmp", []uint64{1, 0, 0, 0})

	// A range that ends inside flows: the part after it is left out.
	_, m = series(t, db, SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 1})
	wantValues(t, m, "tcp", []uint64{600 + 166})
}

// TestDB_Series_Conservation: the series of flows wholly in the range sum
// to the flows' traffic, byte for byte, whatever the spread (large values
// included), through the index and through the chunked scan.
func TestDB_Series_Conservation(t *testing.T) {
	for _, n := range []int{300, probeCap + 700} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			db := openTest(t, Options{Retention: -1, MaxSize: -1})
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			var flows []record.Flow
			var wantBytes, wantPackets uint64
			for i := range n {
				first := rng.Float64() * 3500
				last := first + rng.Float64()*(3600-first)
				if i%5 == 0 {
					last = first
				}
				bytes := uint64(rng.Int64N(1 << 40))
				packets := uint64(1 + rng.IntN(1e6))
				peer := fmt.Sprintf("192.0.2.%d", rng.IntN(250))
				f := sflow(fmt.Sprintf("%x", i+1), uint8(rng.IntN(256)), record.DirOutbound, "10.0.0.1", peer, first, last, packets, bytes)
				flows = append(flows, f)
				wantBytes += f.BytesSent + f.BytesReceived
				wantPackets += f.PacketsSent + f.PacketsReceived
			}
			var seq uint64
			applyFlows(t, db, &seq, flows)
			for _, by := range []string{SeriesByProto, SeriesByPeer, SeriesByDirection} {
				for _, metric := range []string{SeriesBytes, SeriesPackets} {
					res, _ := series(t, db, SeriesQuery{Since: seriesT0, Step: 7 * time.Second, Buckets: 515, By: by, Metric: metric})
					var sum uint64
					for _, s := range res.Series {
						sum += s.Total
					}
					want := wantBytes
					if metric == SeriesPackets {
						want = wantPackets
					}
					if sum != want {
						t.Errorf("by %s, %s: totals sum to %d, want %d", by, metric, sum, want)
					}
					if len(res.Series) > SeriesTopKeys+1 {
						t.Errorf("by %s: %d series, want at most %d", by, len(res.Series), SeriesTopKeys+1)
					}
				}
			}
		})
	}
}

// TestDB_Series_Windows: with windows on, each bucket holds exactly what
// the windows counted: the growth of each record over the previous one,
// in the window of its last_seen.
func TestDB_Series_Windows(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1, AggregationWindow: time.Minute})
	if got := db.AggregationWindow(); got != time.Minute {
		t.Fatalf("AggregationWindow: got %v, want 1m", got)
	}
	var seq uint64
	rec := func(id string, proto uint8, last float64, packets, bytes uint64) record.Flow {
		return sflow(id, proto, record.DirInbound, "203.0.113.9", "10.0.0.1", 0, last, packets, bytes)
	}
	// Flow x: 100 bytes by 10 s, 250 by 70 s, 400 by 200 s: windows at
	// 0 (100), 60 (150) and 180 (150). Flow y (udp): 40 by 130 s.
	applyFlows(t, db, &seq, []record.Flow{rec("x", 6, 10, 1, 100), rec("y", 17, 130, 2, 40)})
	applyFlows(t, db, &seq, []record.Flow{rec("x", 6, 70, 3, 250)})
	applyFlows(t, db, &seq, []record.Flow{rec("x", 6, 200, 5, 400)})

	res, m := series(t, db, SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 5})
	if res.Source != SourceWindows || !res.Exact {
		t.Errorf("source %q exact %v, want windows, true", res.Source, res.Exact)
	}
	wantValues(t, m, "tcp", []uint64{100, 150, 0, 150, 0})
	wantValues(t, m, "udp", []uint64{0, 0, 40, 0, 0})

	_, m = series(t, db, SeriesQuery{Since: seriesT0, Step: 2 * time.Minute, Buckets: 2, Metric: SeriesPackets})
	wantValues(t, m, "tcp", []uint64{3, 2})
	wantValues(t, m, "udp", []uint64{0, 2})

	// From the second window on: the first is out of the range.
	_, m = series(t, db, SeriesQuery{Since: seriesT0.Add(time.Minute), Step: time.Minute, Buckets: 2, By: SeriesByPeer})
	wantValues(t, m, "203.0.113.9", []uint64{150, 40})

	// A step the window does not divide is not exact.
	res, _ = series(t, db, SeriesQuery{Since: seriesT0, Step: 90 * time.Second, Buckets: 3})
	if res.Exact {
		t.Errorf("step 90 s over 60 s windows: exact")
	}
}

// TestDB_Series_WindowsChunked: a range with more windows than the probe
// cap is read in chunks of rids; the sums are those of the records.
func TestDB_Series_WindowsChunked(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1, AggregationWindow: 10 * time.Second})
	var flows []record.Flow
	want := map[string][]uint64{"tcp": make([]uint64, 6), "udp": make([]uint64, 6)}
	for i := range probeCap + 500 {
		proto := uint8(6)
		if i%3 == 0 {
			proto = 17
		}
		at := float64(i % 60)
		b := uint64(100 + i%7)
		flows = append(flows, sflow(fmt.Sprintf("%x", i+1), proto, record.DirOutbound, "10.0.0.1", "192.0.2.1", at, at, 1, b))
		want[record.ProtoName(proto)][i%60/10] += b
	}
	var seq uint64
	applyFlows(t, db, &seq, flows)
	_, m := series(t, db, SeriesQuery{Since: seriesT0, Step: 10 * time.Second, Buckets: 6})
	wantValues(t, m, "tcp", want["tcp"])
	wantValues(t, m, "udp", want["udp"])
	// A filter (proto) over the chunks.
	_, m = series(t, db, SeriesQuery{Since: seriesT0, Step: 10 * time.Second, Buckets: 6, Filter: FlowQuery{Proto: "udp"}})
	wantValues(t, m, "udp", want["udp"])
	wantValues(t, m, "tcp", nil)
}

// TestDB_Series_TopAndOther: ten protocols give the eight largest and
// "other" with the sum of the rest.
func TestDB_Series_TopAndOther(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	var flows []record.Flow
	for i := range 10 {
		// Protocol 100+i carries (i+1)*1000 bytes at 5 s.
		flows = append(flows, sflow(fmt.Sprintf("%x", i+1), uint8(100+i), record.DirOutbound, "10.0.0.1", "192.0.2.1", 5, 5, 1, uint64(i+1)*1000))
	}
	var seq uint64
	applyFlows(t, db, &seq, flows)
	res, m := series(t, db, SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 2})
	var keys []string
	for _, s := range res.Series {
		keys = append(keys, s.Key)
	}
	// The top eight are 102..109 (3000..10000 bytes); other is 1000 +
	// 2000 = 3000, which ties 102 and sorts after it.
	want := []string{"109", "108", "107", "106", "105", "104", "103", "102", SeriesOther}
	if !slices.Equal(keys, want) {
		t.Errorf("keys: got %q, want %q", keys, want)
	}
	wantValues(t, m, SeriesOther, []uint64{3000, 0})
	wantValues(t, m, "109", []uint64{10000, 0})
}

// TestDB_Series_ManyPeers: beyond maxSeriesKeys distinct keys, the later
// ones count as other; nothing is lost.
func TestDB_Series_ManyPeers(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	var flows []record.Flow
	var total uint64
	for i := range maxSeriesKeys + 100 {
		b := uint64(10 + i)
		flows = append(flows, sflow(fmt.Sprintf("%x", i+1), 6, record.DirOutbound, "10.0.0.1",
			netip.AddrFrom4([4]byte{198, 51, byte(i / 256), byte(i)}).String(), 1, 1, 1, b))
		total += b
	}
	var seq uint64
	applyFlows(t, db, &seq, flows)
	res, m := series(t, db, SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 1, By: SeriesByPeer})
	if len(res.Series) != SeriesTopKeys+1 {
		t.Fatalf("got %d series, want %d", len(res.Series), SeriesTopKeys+1)
	}
	var sum uint64
	for _, s := range res.Series {
		sum += s.Total
	}
	if sum != total {
		t.Errorf("totals sum to %d, want %d", sum, total)
	}
	if m[SeriesOther].Total == 0 {
		t.Errorf("no other")
	}
}

// TestDB_Series_ByAndFilters: the keys of each grouping, and the flow
// filters.
func TestDB_Series_ByAndFilters(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	flows := []record.Flow{
		sflow("1", 6, record.DirInbound, "203.0.113.5", "10.0.0.1", 1, 1, 1, 1000),
		sflow("2", 17, record.DirOutbound, "10.0.0.1", "8.8.8.8", 2, 2, 1, 200),
		sflow("3", 6, record.DirInternal, "10.0.0.1", "10.0.0.2", 3, 3, 1, 30),
		sflow("4", 1, "", "10.0.0.3", "192.0.2.7", 4, 4, 1, 4),
	}
	flows[2].State = "REJ"
	flows[1].DstPort = 53
	var seq uint64
	applyFlows(t, db, &seq, flows)
	one := func(v uint64) []uint64 { return []uint64{v} }
	for _, tc := range []struct {
		name   string
		by     string
		filter FlowQuery
		want   map[string]uint64
	}{
		{"proto", "", FlowQuery{}, map[string]uint64{"tcp": 1030, "udp": 200, "icmp": 4}},
		{"direction", SeriesByDirection, FlowQuery{}, map[string]uint64{"inbound": 1000, "outbound": 200, "internal": 30, "unknown": 4}},
		{"peer", SeriesByPeer, FlowQuery{}, map[string]uint64{"203.0.113.5": 1000, "8.8.8.8": 200, "10.0.0.2": 30, "192.0.2.7": 4}},
		{"ip", SeriesByDirection, FlowQuery{IP: netip.MustParseAddr("10.0.0.1")}, map[string]uint64{"inbound": 1000, "outbound": 200, "internal": 30}},
		{"cidr", SeriesByPeer, FlowQuery{CIDR: mustPrefix("192.0.2.0/24")}, map[string]uint64{"192.0.2.7": 4}},
		{"port", SeriesByProto, FlowQuery{Port: 53}, map[string]uint64{"udp": 200}},
		{"proto filter", SeriesByPeer, FlowQuery{Proto: "tcp"}, map[string]uint64{"203.0.113.5": 1000, "10.0.0.2": 30}},
		{"state", SeriesByProto, FlowQuery{State: "REJ"}, map[string]uint64{"tcp": 30}},
		{"direction filter", SeriesByProto, FlowQuery{Direction: record.DirInbound}, map[string]uint64{"tcp": 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, m := series(t, db, SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 1, By: tc.by, Filter: tc.filter})
			if len(m) != len(tc.want) {
				t.Errorf("got %d keys (%v), want %d", len(m), m, len(tc.want))
			}
			for k, v := range tc.want {
				wantValues(t, m, k, one(v))
			}
		})
	}
}

// TestDB_Series_Invalid: arguments out of range are ErrInvalid.
func TestDB_Series_Invalid(t *testing.T) {
	db := openTest(t, Options{Retention: -1, MaxSize: -1})
	for name, q := range map[string]SeriesQuery{
		"step":    {Since: seriesT0, Step: time.Millisecond, Buckets: 1},
		"buckets": {Since: seriesT0, Step: time.Second, Buckets: MaxSeriesBuckets + 1},
		"none":    {Since: seriesT0, Step: time.Second},
		"by":      {Since: seriesT0, Step: time.Second, Buckets: 1, By: "port"},
		"metric":  {Since: seriesT0, Step: time.Second, Buckets: 1, Metric: "flows"},
		"proto":   {Since: seriesT0, Step: time.Second, Buckets: 1, Filter: FlowQuery{Proto: "nope"}},
		"range":   {Since: time.Unix(0, math.MaxInt64-int64(time.Hour)), Step: 86400 * time.Second, Buckets: 1440},
	} {
		if _, err := db.Series(t.Context(), q); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

// BenchmarkSeries reads the series of a million flows (tens of seconds to
// write them): go test -run '^$' -bench Series -benchtime 3x ./pkg/store/
func BenchmarkSeries(b *testing.B) {
	db := openTest(b, Options{Retention: -1, MaxSize: -1})
	rng := rand.New(rand.NewPCG(1, 2))
	var seq uint64
	const n = 1_000_000
	for i := 0; i < n; i += 10000 {
		flows := make([]record.Flow, 0, 10000)
		for j := range 10000 {
			first := rng.Float64() * 86000
			flows = append(flows, sflow(strconv.Itoa(i+j+1), uint8(rng.IntN(8)), simDirs[rng.IntN(4)], "10.0.0.1",
				fmt.Sprintf("192.0.%d.%d", rng.IntN(4), rng.IntN(256)), first, first+rng.Float64()*400, 10, 1000))
		}
		applyFlows(b, db, &seq, flows)
	}
	for _, by := range []string{SeriesByProto, SeriesByPeer} {
		b.Run(by, func(b *testing.B) {
			for b.Loop() {
				if _, err := db.Series(b.Context(), SeriesQuery{Since: seriesT0, Step: time.Minute, Buckets: 1440, By: by}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
