package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/api"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/store"
)

var seriesT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// seriesFlow is a flow from first to last seconds after seriesT0.
func seriesFlow(id string, proto uint8, dir, src, dst string, first, last int, packets, bytes uint64) record.Flow {
	return record.Flow{
		ID: id, CommunityID: "1:" + id, Proto: record.ProtoName(proto), ProtoNum: proto,
		SrcIP: src, SrcPort: 40000, DstIP: dst, DstPort: 443,
		FirstSeen:   record.Time{Time: seriesT0.Add(time.Duration(first) * time.Second)},
		LastSeen:    record.Time{Time: seriesT0.Add(time.Duration(last) * time.Second)},
		PacketsSent: packets, BytesSent: bytes, State: "SF", Direction: dir,
	}
}

// startWith writes the batches into a new database (windows of width
// window), then starts an API server on it with the token.
func startWith(t *testing.T, window time.Duration, token string, batches ...[]record.Flow) *Server {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "lightshark.db")
	db, err := store.Open(t.Context(), path, store.Options{AggregationWindow: window, Retention: -1, MaxSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := store.Capturer{InstanceID: "test", Hostname: "h"}
	for i, flows := range batches {
		if _, err := db.ApplyBatch(t.Context(), c, &store.Batch{Seq: uint64(i + 1), Flows: flows, ReceivedAt: seriesT0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Start(t.Context(), Config{Socket: filepath.Join(dir, "s.sock"), DBPath: path, Listen: "127.0.0.1:0",
		AggregationWindow: window, Retention: -1, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func getSeries(t *testing.T, s *Server, query, token string, want int, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+s.Addr().String()+"/api/series?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET /api/series?%s: got %d, want %d: %s", query, resp.StatusCode, want, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

func byKey(r api.SeriesResponse) map[string][]uint64 {
	m := make(map[string][]uint64)
	for _, s := range r.Series {
		m[s.Key] = s.Values
	}
	return m
}

// TestSeries_windows: GET /api/series on a real store with 60 s windows:
// the growth of each record lands in the window of its last_seen, and the
// token is required.
func TestSeries_windows(t *testing.T) {
	// Flow a (tcp, outbound to 1.1.1.1): 100 bytes by 10 s, 300 by 130 s.
	// Flow b (udp, inbound from 203.0.113.7): 50 bytes at 70 s.
	s := startWith(t, time.Minute, "tok",
		[]record.Flow{seriesFlow("a", 6, record.DirOutbound, "10.0.0.1", "1.1.1.1", 0, 10, 1, 100)},
		[]record.Flow{seriesFlow("b", 17, record.DirInbound, "203.0.113.7", "10.0.0.1", 70, 70, 1, 50)},
		[]record.Flow{seriesFlow("a", 6, record.DirOutbound, "10.0.0.1", "1.1.1.1", 0, 130, 3, 300)},
	)
	since, until := seriesT0.Unix()*1000, seriesT0.Add(3*time.Minute).Unix()*1000
	q := "since=" + itoa(since) + "&until=" + itoa(until)

	var e map[string]any
	getSeries(t, s, q, "", 401, &e)
	getSeries(t, s, q, "wrong", 401, &e)

	var r api.SeriesResponse
	getSeries(t, s, q, "tok", 200, &r)
	if r.Source != "windows" || !r.Exact || r.StepSeconds != 60 || r.Buckets != 3 || !r.Since.Equal(seriesT0) {
		t.Errorf("got %+v", r)
	}
	got := byKey(r)
	if want := map[string][]uint64{"tcp": {100, 0, 200}, "udp": {0, 50, 0}}; !equalSeries(got, want) {
		t.Errorf("by proto: got %v, want %v", got, want)
	}
	getSeries(t, s, q+"&by=peer&metric=packets", "tok", 200, &r)
	if want := map[string][]uint64{"1.1.1.1": {1, 0, 2}, "203.0.113.7": {0, 1, 0}}; !equalSeries(byKey(r), want) {
		t.Errorf("by peer: got %v, want %v", byKey(r), want)
	}
	getSeries(t, s, q+"&by=direction&direction=inbound", "tok", 200, &r)
	if want := map[string][]uint64{"inbound": {0, 50, 0}}; !equalSeries(byKey(r), want) {
		t.Errorf("inbound only: got %v, want %v", byKey(r), want)
	}
	// A step below the window is raised to it.
	getSeries(t, s, q+"&step=10", "tok", 200, &r)
	if r.StepSeconds != 60 || r.Buckets != 3 {
		t.Errorf("step 10 over 60 s windows: got step %d, %d buckets", r.StepSeconds, r.Buckets)
	}
	var bad struct{ Error, Parameter string }
	getSeries(t, s, q+"&by=vlan", "tok", 400, &bad)
	if bad.Parameter != "by" {
		t.Errorf("by=vlan: got %+v", bad)
	}
}

// TestSeries_flows: without windows, each flow is spread over its
// lifetime; a flow over [30 s, 150 s] with 1200 bytes gives 300, 600, 300
// to the minutes it overlaps by 30, 60 and 30 s.
func TestSeries_flows(t *testing.T) {
	s := startWith(t, 0, "",
		[]record.Flow{
			seriesFlow("a", 6, record.DirOutbound, "10.0.0.1", "1.1.1.1", 30, 150, 12, 1200),
			seriesFlow("b", 1, "", "10.0.0.1", "1.1.1.1", 100, 100, 1, 64),
		})
	var r api.SeriesResponse
	getSeries(t, s, "since="+seriesT0.Format(time.RFC3339)+"&until="+seriesT0.Add(3*time.Minute).Format(time.RFC3339)+"&step=60", "", 200, &r)
	if r.Source != "flows" || r.Exact || r.Buckets != 3 {
		t.Errorf("got %+v", r)
	}
	if want := map[string][]uint64{"tcp": {300, 600, 300}, "icmp": {0, 64, 0}}; !equalSeries(byKey(r), want) {
		t.Errorf("got %v, want %v", byKey(r), want)
	}
	if len(r.Series) != 2 || r.Series[0].Key != "tcp" || r.Series[0].Total != 1200 || r.Series[1].Total != 64 {
		t.Errorf("series %+v", r.Series)
	}
}

func equalSeries(a, b map[string][]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
