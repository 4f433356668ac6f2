package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

var cmpTime = cmp.Comparer(func(a, b record.Time) bool { return a.Equal(b.Time) })

// liveFlows are the active flows the live fixture holds.
var liveFlows = []record.Flow{
	mkFlow("00000000000000a1", "tcp", "10.0.0.5", 45678, "142.250.1.1", 443, t0.Add(-time.Minute), t0, 30, 3000, 40, 50000),
	mkFlow("00000000000000a2", "udp", "10.0.0.5", 5353, "10.0.0.53", 53, t0.Add(-time.Minute), t0, 2, 150, 2, 300),
	mkFlow("00000000000000a3", "tcp", "fd00::1", 40000, "fd00::2", 5432, t0.Add(-time.Minute), t0, 100, 10000, 90, 9000),
}

// feedLive applies two batches: 1000 packets and 100 kB at t0-1s (the
// capture's first batch), then 1500 and 150 kB at t0. At t0 the rates are
// 500 packets/s and 50 kB/s.
func (f *fixture) feedLive() {
	f.live.Apply("cap-1", live.Batch{
		Seq:   1,
		Flows: liveFlows,
		Stats: record.CaptureStats{
			Packets: 1000, Bytes: 100000, KernelReceived: 1000, ActiveFlows: 3, Flows: 3,
			DecodeErrors: map[string]uint64{"truncated": 3, "bad_ipv4_header": 1},
		},
		ReceivedAt: t0.Add(-time.Second),
	})
	f.live.Apply("cap-1", live.Batch{
		Seq: 2,
		Stats: record.CaptureStats{
			Packets: 1500, Bytes: 150000, KernelReceived: 1500, ActiveFlows: 3, Flows: 3, Evictions: 2,
			DecodeErrors: map[string]uint64{"truncated": 5, "bad_ipv4_header": 1},
		},
		ReceivedAt: t0,
	})
}

// storeFlows are the stored flows the filter tests select from.
var storeFlows = []record.Flow{
	withState(mkFlow("000000000000000a", "tcp", "10.0.0.5", 45678, "142.250.1.1", 443, t0.Add(-60*time.Minute), t0.Add(-50*time.Minute), 30, 3000, 40, 50000), "SF", record.DirOutbound),
	withState(mkFlow("000000000000000b", "udp", "10.0.0.5", 5353, "10.0.0.53", 53, t0.Add(-40*time.Minute), t0.Add(-39*time.Minute), 2, 150, 2, 300), "SF", record.DirInternal),
	withState(mkFlow("000000000000000c", "tcp", "fd00::1", 40000, "fd00::2", 5432, t0.Add(-30*time.Minute), t0.Add(-time.Minute), 100, 10000, 90, 9000), "S1", record.DirInternal),
	withState(mkFlow("000000000000000d", "icmp", "192.168.1.10", 0, "10.0.0.5", 0, t0.Add(-20*time.Minute), t0.Add(-20*time.Minute), 1, 98, 1, 98), "OTH", record.DirInbound),
	withState(mkFlow("000000000000000e", "tcp", "203.0.113.9", 51000, "10.0.0.5", 22, t0.Add(-10*time.Minute), t0.Add(-10*time.Minute), 2, 74, 1, 54), "REJ", record.DirInbound),
}

func withState(f record.Flow, state, dir string) record.Flow {
	f.State, f.Direction = state, dir
	return f
}

var storeSamples = []record.PacketSample{
	{Timestamp: t0.Add(-3 * time.Second).UnixMilli(), SrcIP: "10.0.0.5", DstIP: "142.250.1.1", SrcPort: 45678, DstPort: 443, Protocol: "TCP", Length: 1500, FlowID: "000000000000000a"},
	{Timestamp: t0.Add(-2 * time.Second).UnixMilli(), SrcIP: "10.0.0.5", DstIP: "10.0.0.53", SrcPort: 5353, DstPort: 53, Protocol: "UDP", Length: 80, FlowID: "000000000000000b"},
	{Timestamp: t0.Add(-1 * time.Second).UnixMilli(), SrcIP: "192.168.1.10", DstIP: "10.0.0.5", Protocol: "ICMP", Length: 98, FlowID: "000000000000000d"},
}

func newFedFixture(t testing.TB, configure func(*Server)) *fixture {
	f := newFixture(t, configure)
	f.store.flows = slices.Clone(storeFlows)
	f.store.samples = slices.Clone(storeSamples)
	f.feedLive()
	return f
}

func TestServer_stats(t *testing.T) {
	f := newFedFixture(t, nil)
	var got StatsResponse
	f.getJSON(t, "/api/stats", 200, &got)
	want := StatsResponse{
		UptimeSeconds: 120, TotalPackets: 1500, TotalBytes: 150000, ActiveConnections: 3,
		Rates: Rates{PacketsPerSecond: 500, BytesPerSecond: 50000}, RateWindowSeconds: 10,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/api/stats (-want +got):\n%s", diff)
	}
	// Eleven seconds of silence later the window is empty: the rate is
	// current, not an average since start.
	f.clock.Advance(11 * time.Second)
	f.getJSON(t, "/api/stats", 200, &got)
	if got.PacketsPerSecond != 0 || got.BytesPerSecond != 0 || got.TotalPackets != 1500 {
		t.Errorf("after silence: got %+v, want zero rates and the same totals", got)
	}
}

func TestServer_live(t *testing.T) {
	f := newFedFixture(t, nil)
	var got LiveResponse
	f.getJSON(t, "/api/live", 200, &got)
	if got.TotalPackets != 1500 || got.TotalBytes != 150000 || got.ActiveConnections != 3 {
		t.Errorf("totals: got %d %d %d, want 1500 150000 3", got.TotalPackets, got.TotalBytes, got.ActiveConnections)
	}
	want := []struct {
		conn  string
		stats LiveStats
		flow  record.Flow
	}{
		{"[fd00::1]:40000 -> [fd00::2]:5432", LiveStats{BytesSent: 10000, BytesReceived: 9000, PacketsCount: 190, PacketsSent: 100, PacketsReceived: 90}, liveFlows[2]},
		{"10.0.0.5:45678 -> 142.250.1.1:443", LiveStats{BytesSent: 3000, BytesReceived: 50000, PacketsCount: 70, PacketsSent: 30, PacketsReceived: 40}, liveFlows[0]},
		{"10.0.0.5:5353 -> 10.0.0.53:53", LiveStats{BytesSent: 150, BytesReceived: 300, PacketsCount: 4, PacketsSent: 2, PacketsReceived: 2}, liveFlows[1]},
	}
	if len(got.Connections) != len(want) {
		t.Fatalf("got %d connections, want %d", len(got.Connections), len(want))
	}
	for i, w := range want {
		c := got.Connections[i]
		if c.Connection != w.conn || c.Stats != w.stats {
			t.Errorf("connection %d: got %q %+v, want %q %+v", i, c.Connection, c.Stats, w.conn, w.stats)
		}
		if diff := cmp.Diff(w.flow, c.Flow, cmpTime); diff != "" {
			t.Errorf("connection %d flow (-want +got):\n%s", i, diff)
		}
	}
	f.getJSON(t, "/api/live?limit=1", 200, &got)
	if len(got.Connections) != 1 || got.Connections[0].Stats.PacketsCount != 190 {
		t.Errorf("limit=1: got %+v", got.Connections)
	}
	// The body is reused while the live state stays the same, and never
	// after it changed.
	_, first, _ := f.get(t, "/api/live")
	_, again, _ := f.get(t, "/api/live")
	if string(first) != string(again) {
		t.Errorf("same state, different bodies:\n%s\n%s", first, again)
	}
	more := liveFlows[1]
	more.PacketsSent, more.BytesSent = 500, 50000
	f.live.Apply("cap", live.Batch{Seq: 99, Flows: []record.Flow{more}, ReceivedAt: f.clock.Now()})
	f.getJSON(t, "/api/live", 200, &got)
	if len(got.Connections) == 0 || got.Connections[0].Stats.PacketsSent != 500 {
		t.Errorf("after an update: got %+v, want the updated flow first", got.Connections)
	}
	// Empty: an empty array, never null.
	empty := newFixture(t, nil)
	code, body, _ := empty.get(t, "/api/live")
	if code != 200 || !strings.Contains(string(body), `"connections":[]`) {
		t.Errorf("empty /api/live: got %d %s", code, body)
	}
}

func TestServer_history(t *testing.T) {
	f := newFedFixture(t, nil)
	var got []record.PacketSample
	f.getJSON(t, "/api/history?limit=2", 200, &got)
	want := []record.PacketSample{storeSamples[2], storeSamples[1]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/api/history?limit=2 (-want +got):\n%s", diff)
	}
	f.getJSON(t, "/api/history", 200, &got)
	if len(got) != 3 || got[0] != storeSamples[2] {
		t.Errorf("/api/history: got %v", got)
	}
	// Over the maximum: lowered, as the original did.
	f.getJSON(t, "/api/history?limit=5000", 200, &got)
	if len(got) != 3 {
		t.Errorf("limit=5000: got %d records", len(got))
	}
	f.store.samples = nil
	code, body, _ := f.get(t, "/api/history")
	if code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("empty history: got %d %s, want []", code, body)
	}

	// Without a store, the live ring answers.
	nostore := newFixture(t, func(s *Server) { s.Store = nil })
	nostore.live.Apply("cap", live.Batch{Seq: 1, Samples: storeSamples})
	nostore.getJSON(t, "/api/history?limit=2", 200, &got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history from the live ring (-want +got):\n%s", diff)
	}
}

func TestServer_health(t *testing.T) {
	f := newFedFixture(t, nil)
	var got HealthResponse
	f.getJSON(t, "/api/health", 200, &got)
	if got.Status != "ok" || len(got.Reasons) != 0 || got.ActiveConnections != 3 || got.TotalPackets != 1500 || got.TotalBytes != 150000 {
		t.Errorf("got %+v", got)
	}
	if got.CapturersConnected != 1 || len(got.Capturers) != 1 || got.Capturers[0].InstanceID != "cap-1" || got.Capturers[0].LastSeq != 2 {
		t.Errorf("capturers: got %d %+v", got.CapturersConnected, got.Capturers)
	}
	if got.Capture.Packets != 1500 || got.Capture.DecodeErrors["truncated"] != 5 || got.Capture.Evictions != 2 {
		t.Errorf("capture counters: got %+v", got.Capture)
	}
	if got.LastBatch == nil || !got.LastBatch.Equal(t0) || got.LastBatchAgeSeconds == nil || *got.LastBatchAgeSeconds != 0 {
		t.Errorf("last batch: got %v %v", got.LastBatch, got.LastBatchAgeSeconds)
	}

	f.clock.Advance(6 * time.Second)
	f.live.SetStoreError(errors.New("database or disk is full"))
	f.getJSON(t, "/api/health", 200, &got)
	if got.Status != "degraded" || got.StoreError != "database or disk is full" ||
		!slices.Equal(got.Reasons, []string{"capturer silent for 6s (more than 5s)", "store failing: database or disk is full"}) {
		t.Errorf("degraded: got %q %q %q", got.Status, got.Reasons, got.StoreError)
	}

	empty := newFixture(t, nil)
	got = HealthResponse{}
	empty.getJSON(t, "/api/health", 200, &got)
	if got.Status != "degraded" || !slices.Equal(got.Reasons, []string{"no capturer has connected yet"}) || got.LastBatch != nil {
		t.Errorf("no capturer: got %q %q", got.Status, got.Reasons)
	}
}

func flowIDs(flows []record.Flow) string {
	var ids []string
	for _, f := range flows {
		ids = append(ids, strings.TrimLeft(f.ID, "0"))
	}
	return strings.Join(ids, ",")
}

// TestServer_flows: each filter selects the hand-picked flows, in the
// order asked for.
func TestServer_flows(t *testing.T) {
	f := newFedFixture(t, nil)
	ms := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).UnixMilli(), 10) }
	rfc := func(d time.Duration) string { return url.QueryEscape(t0.Add(d).Format(time.RFC3339)) }
	cases := []struct {
		query string
		want  string // ids, in order
	}{
		{"", "c,e,d,b,a"}, // last_seen, newest first
		{"ip=10.0.0.5", "e,d,b,a"},
		{"ip=::ffff:10.0.0.5", "e,d,b,a"},
		{"ip=fd00::2", "c"},
		{"cidr=10.0.0.0/24", "e,d,b,a"},
		{"cidr=10.0.0.9/24", "e,d,b,a"}, // host bits ignored
		{"cidr=fd00::/16", "c"},
		{"cidr=::/0", "c,e,d,b,a"},
		{"cidr=203.0.113.0/24", "e"},
		{"port=443", "a"},
		{"port=22", "e"},
		{"proto=tcp", "c,e,a"},
		{"proto=UDP", "b"},
		{"proto=1", "d"},
		{"state=rej", "e"},
		{"direction=inbound", "e,d"},
		{"since=" + rfc(-35*time.Minute), "c,e,d"},
		{"until=" + ms(-35*time.Minute), "b,a"},
		{"since=" + ms(-45*time.Minute) + "&until=" + rfc(-25*time.Minute), "c,b"},
		{"proto=tcp&direction=inbound", "e"},
		{"ip=10.0.0.5&port=53", "b"},
		{"port=8080", ""},
		{"order=bytes", "a,c,b,d,e"},
		{"order=packets_asc", "d,e,b,a,c"},
		{"order=first_seen_asc", "a,b,c,d,e"},
		{"order=first_seen_desc&limit=2", "e,d"},
		{"format=json&limit=1000", "c,e,d,b,a"},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			var got FlowsResponse
			f.getJSON(t, "/api/flows?"+tc.query, 200, &got)
			if ids := flowIDs(got.Flows); ids != tc.want {
				t.Errorf("got %q, want %q", ids, tc.want)
			}
		})
	}

	// The records come out as they went in.
	var got FlowsResponse
	f.getJSON(t, "/api/flows?order=first_seen_asc", 200, &got)
	if diff := cmp.Diff(storeFlows, got.Flows, cmpTime); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	code, body, _ := f.get(t, "/api/flows?port=8080")
	if code != 200 || !strings.Contains(string(body), `"flows":[]`) || !strings.Contains(string(body), `"next_cursor":""`) {
		t.Errorf("empty page: got %d %s", code, body)
	}
}

// TestServer_flows_pages: following next_cursor visits every flow once, in
// order, and a cursor is only good for the query it came from.
func TestServer_flows_pages(t *testing.T) {
	f := newFixture(t, nil)
	var all []record.Flow
	for i := range 250 {
		all = append(all, mkFlow(fmt.Sprintf("%016x", i+1), "tcp", "10.0.0.1", uint16(1024+i), "10.0.0.2", 80,
			t0.Add(time.Duration(i)*time.Second), t0.Add(time.Duration(i)*time.Second), 1, 60, 1, 60))
	}
	f.store.flows = all
	var seen []string
	cursor := ""
	pages := 0
	for {
		q := "/api/flows?order=first_seen_asc&limit=100"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		var page FlowsResponse
		f.getJSON(t, q, 200, &page)
		pages++
		for _, fl := range page.Flows {
			seen = append(seen, fl.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if pages != 3 || len(seen) != 250 {
		t.Fatalf("got %d pages, %d flows; want 3 and 250", pages, len(seen))
	}
	for i, id := range seen {
		if id != all[i].ID {
			t.Fatalf("flow %d: got %s, want %s", i, id, all[i].ID)
		}
	}
	// The cursor of one query is refused by another.
	code, body, _ := f.get(t, "/api/flows?order=bytes&cursor="+url.QueryEscape(cursor))
	var e errorBody
	if code != 400 || json.Unmarshal(body, &e) != nil || e.Parameter != "cursor" {
		t.Errorf("foreign cursor: got %d %s, want 400 naming cursor", code, body)
	}
}

// TestServer_flows_ndjson: format=ndjson streams every match, one record
// per line, while the store is still reading.
func TestServer_flows_ndjson(t *testing.T) {
	f := newFixture(t, nil)
	const n = 5000
	for i := range n {
		proto := "tcp"
		if i%5 == 0 {
			proto = "udp"
		}
		f.store.flows = append(f.store.flows, mkFlow(fmt.Sprintf("%016x", i+1), proto, "10.0.0.1", uint16(1024+i%60000), "10.0.0.2", 80,
			t0.Add(time.Duration(i)*time.Millisecond), t0.Add(time.Duration(i)*time.Millisecond), 1, 60, 1, 60))
	}
	// The store stops after 2000 flows until the client has read lines:
	// the export must be streaming, not built in memory first.
	f.store.eachGate = make(chan struct{})
	f.store.eachGateAt = 2000
	resp, err := http.Get(f.ts.URL + "/api/flows?format=ndjson&proto=tcp&order=first_seen_asc")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("got %d %q", resp.StatusCode, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	count := 0
	for sc.Scan() {
		var fl record.Flow
		if err := json.Unmarshal(sc.Bytes(), &fl); err != nil || fl.ID == "" {
			t.Fatalf("line %d: %q: %v", count+1, sc.Text(), err)
		}
		if fl.Proto != "tcp" {
			t.Fatalf("line %d: a %s flow passed proto=tcp", count+1, fl.Proto)
		}
		count++
		if count == 100 {
			close(f.store.eachGate) // lines arrived before the store finished
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if want := n * 4 / 5; count != want {
		t.Errorf("got %d lines, want %d", count, want)
	}

	// limit bounds the export.
	f.store.eachGate = nil
	code, body, _ := f.get(t, "/api/flows?format=ndjson&limit=7")
	if lines := strings.Count(string(body), "\n"); code != 200 || lines != 7 {
		t.Errorf("limit=7: got %d, %d lines", code, lines)
	}
}

func TestServer_flow(t *testing.T) {
	f := newFedFixture(t, nil)
	var got record.Flow
	f.getJSON(t, "/api/flows/000000000000000c", 200, &got)
	if diff := cmp.Diff(storeFlows[2], got, cmpTime); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var e errorBody
	f.getJSON(t, "/api/flows/00000000000000ff", 404, &e)
	if !strings.Contains(e.Error, "not found") {
		t.Errorf("absent flow: got %+v", e)
	}
	f.getJSON(t, "/api/flows/not-hex", 400, &e)
	if e.Parameter != "id" {
		t.Errorf("bad id: got %+v", e)
	}
}

// TestServer_storeErrors: a failing store is a JSON 500 (or 503 on a
// timeout), never a crash or an empty 200.
func TestServer_storeErrors(t *testing.T) {
	f := newFedFixture(t, nil)
	for _, tc := range []struct {
		err  error
		code int
	}{
		{errors.New("disk I/O error"), 500},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), 503},
	} {
		f.store.setErr(tc.err)
		for _, path := range []string{"/api/flows", "/api/flows?format=ndjson", "/api/flows/000000000000000a", "/api/history"} {
			var e errorBody
			f.getJSON(t, path, tc.code, &e)
			if e.Error == "" {
				t.Errorf("%s: empty error", path)
			}
		}
	}
	f.store.setErr(nil)

	nostore := newFixture(t, func(s *Server) { s.Store = nil })
	for _, path := range []string{"/api/flows", "/api/flows/000000000000000a"} {
		var e errorBody
		nostore.getJSON(t, path, 503, &e)
	}
}

// TestServer_badParams: every bad parameter is a 400 whose JSON names it.
func TestServer_badParams(t *testing.T) {
	f := newFedFixture(t, nil)
	cases := []struct {
		path  string
		param string
	}{
		{"/api/flows?port=0", "port"},
		{"/api/flows?port=65536", "port"},
		{"/api/flows?port=-1", "port"},
		{"/api/flows?port=http", "port"},
		{"/api/flows?port=443&port=80", "port"},
		{"/api/flows?ip=10.0.0", "ip"},
		{"/api/flows?ip=10.0.0.0/8", "ip"},
		{"/api/flows?ip=" + strings.Repeat("a", 1000), "ip"},
		{"/api/flows?cidr=10.0.0.0/33", "cidr"},
		{"/api/flows?cidr=10.0.0.1", "cidr"},
		{"/api/flows?cidr=fd00::/129", "cidr"},
		{"/api/flows?cidr=banana", "cidr"},
		{"/api/flows?proto=tcpp", "proto"},
		{"/api/flows?proto=256", "proto"},
		{"/api/flows?proto=-6", "proto"},
		{"/api/flows?state=ESTABLISHED", "state"},
		{"/api/flows?direction=up", "direction"},
		{"/api/flows?since=yesterday", "since"},
		{"/api/flows?since=2026-13-01T00:00:00Z", "since"},
		{"/api/flows?since=-5", "since"},
		{"/api/flows?since=99999999999999999999", "since"},
		{"/api/flows?until=1969-12-31T23:59:59Z", "until"},
		{"/api/flows?until=9999-01-01T00:00:00Z", "until"},
		{"/api/flows?since=2000&until=1000", "until"},
		{"/api/flows?since=1000&until=1000", "until"},
		{"/api/flows?limit=0", "limit"},
		{"/api/flows?limit=1001", "limit"},
		{"/api/flows?limit=ten", "limit"},
		{"/api/flows?limit=99999999999999999999999", "limit"},
		{"/api/flows?order=size", "order"},
		{"/api/flows?order=bytes_sideways", "order"},
		{"/api/flows?cursor=" + strings.Repeat("x", 600), "cursor"},
		{"/api/flows?cursor=a%00b", "cursor"},
		{"/api/flows?cursor=not-issued-here", "cursor"},
		{"/api/flows?format=xml", "format"},
		{"/api/flows?format=ndjson&limit=0", "limit"},
		{"/api/flows?prot=tcp", "prot"},
		{"/api/flows?a%zz=1", "query"},
		{"/api/flows/" + strings.Repeat("a", 65), "id"},
		{"/api/flows/abc%20def", "id"},
		{"/api/history?limit=0", "limit"},
		{"/api/history?limit=-5", "limit"},
		{"/api/history?limit=abc", "limit"},
		{"/api/history?limit=1&limit=2", "limit"},
		{"/api/live?limit=0", "limit"},
		{"/api/live?limit=1001", "limit"},
		{"/api/stream?flows=maybe", "flows"},
		{"/api/stream?flows=1&port=0", "port"},
		{"/api/stream?flows=1&cidr=x", "cidr"},
		{"/api/stream?flows=1&colour=red", "colour"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			var e errorBody
			f.getJSON(t, tc.path, 400, &e)
			if e.Parameter != tc.param || !strings.HasPrefix(e.Error, tc.param+": ") {
				t.Errorf("got %+v, want parameter %q named in the error", e, tc.param)
			}
			if len(e.Error) > 400 {
				t.Errorf("error echoes too much: %d bytes", len(e.Error))
			}
		})
	}
}

// TestServer_routing: unknown paths and methods get JSON errors.
func TestServer_routing(t *testing.T) {
	f := newFedFixture(t, nil)
	var e errorBody
	f.getJSON(t, "/api/nope", 404, &e)
	f.getJSON(t, "/", 404, &e) // no dashboard configured
	req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/api/stats", nil)
	code, body, resp := do(t, req)
	if code != 405 || json.Unmarshal(body, &e) != nil || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("POST /api/stats: got %d %s, Allow %q", code, body, resp.Header.Get("Allow"))
	}
	// No endpoint takes a body.
	req, _ = http.NewRequest(http.MethodPost, f.ts.URL+"/api/stats", strings.NewReader("{}"))
	if code, body, _ := do(t, req); code != 413 || json.Unmarshal(body, &e) != nil {
		t.Errorf("POST with a body: got %d %s, want a JSON 413", code, body)
	}
	req, _ = http.NewRequest(http.MethodHead, f.ts.URL+"/api/stats", nil)
	if code, _, _ := do(t, req); code != 200 {
		t.Errorf("HEAD /api/stats: got %d", code)
	}
	_, _, resp = f.get(t, "/api/stats")
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", resp.Header)
	}

	dash := newFixture(t, func(s *Server) {
		s.Token = "secret"
		s.Dashboard = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>dashboard</html>")
		})
	})
	if code, body, _ := dash.get(t, "/"); code != 200 || !strings.Contains(string(body), "dashboard") {
		t.Errorf("dashboard: got %d %s", code, body)
	}
	if code, _, _ := dash.get(t, "/app.js"); code != 200 {
		t.Errorf("dashboard asset: got %d", code)
	}
	if code, _, _ := dash.get(t, "/api/stats"); code != 401 {
		t.Errorf("dashboard's server without token: got %d, want 401", code)
	}
	// The dashboard's catch-all does not answer for the API.
	dash.getJSON(t, "/api/nope", 404, &e)
}

// TestServer_token: with a token, everything but health, the OpenAPI
// document and the dashboard needs it, compared exactly.
func TestServer_token(t *testing.T) {
	f := newFedFixture(t, func(s *Server) { s.Token = "s3cret-token" })
	protected := []string{"/api/live", "/api/history", "/api/stats", "/api/flows", "/api/flows/000000000000000a", "/metrics", "/api/stream"}
	for _, path := range protected {
		for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret-token-longer", "Bearer s3cret-toke", "Basic czNjcmV0LXRva2Vu", "s3cret-token"} {
			code, body, resp := f.get(t, path, "Authorization", auth)
			var e errorBody
			if code != 401 || json.Unmarshal(body, &e) != nil || e.Error == "" || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s with %q: got %d %s", path, auth, code, body)
			}
		}
	}
	for _, path := range protected[:6] {
		if code, body, _ := f.get(t, path, "Authorization", "Bearer s3cret-token"); code != 200 {
			t.Errorf("%s with the token: got %d %s", path, code, body)
		}
		if code, _, _ := f.get(t, path, "Authorization", "bearer s3cret-token"); code != 200 {
			t.Errorf("%s with a lower-case scheme: got %d", path, code)
		}
		// The query token is for the WebSocket only.
		if code, _, _ := f.get(t, path+"?access_token=s3cret-token"); code != 401 {
			t.Errorf("%s with access_token: got %d, want 401", path, code)
		}
	}
	for _, path := range []string{"/api/health", "/api/openapi.json"} {
		if code, _, _ := f.get(t, path); code != 200 {
			t.Errorf("%s without token: got %d, want 200", path, code)
		}
	}
}

func TestServer_allowCIDRs(t *testing.T) {
	deny := newFedFixture(t, func(s *Server) {
		s.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	})
	for _, path := range []string{"/api/health", "/api/stats", "/metrics", "/api/nope"} {
		var e errorBody
		deny.getJSON(t, path, 403, &e)
	}
	allow := newFedFixture(t, func(s *Server) {
		s.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}
	})
	if code, _, _ := allow.get(t, "/api/stats"); code != 200 {
		t.Errorf("allowed client: got %d", code)
	}
}

func TestServer_CORS(t *testing.T) {
	none := newFedFixture(t, nil)
	_, _, resp := none.get(t, "/api/stats", "Origin", "https://dash.example")
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("CORS without AllowOrigins: got %q", v)
	}

	f := newFedFixture(t, func(s *Server) {
		s.AllowOrigins = []string{"https://dash.example"}
		s.Token = "tok"
	})
	_, _, resp = f.get(t, "/api/stats", "Origin", "https://dash.example", "Authorization", "Bearer tok")
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "https://dash.example" {
		t.Errorf("allowed origin: got %q", v)
	}
	_, _, resp = f.get(t, "/api/stats", "Origin", "https://evil.example", "Authorization", "Bearer tok")
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("other origin: got %q", v)
	}
	// A preflight is answered without the token.
	req, _ := http.NewRequest(http.MethodOptions, f.ts.URL+"/api/flows", nil)
	req.Header.Set("Origin", "https://dash.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	code, _, resp := do(t, req)
	if code != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://dash.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: got %d %v", code, resp.Header)
	}
	req.Header.Set("Origin", "https://evil.example")
	if code, _, resp := do(t, req); code == 204 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: got %d %v", code, resp.Header)
	}
}

func TestServer_queryTooLong(t *testing.T) {
	f := newFedFixture(t, nil)
	var e errorBody
	f.getJSON(t, "/api/flows?ip="+strings.Repeat("1", 5000), 414, &e)
	f.getJSON(t, "/api/health?"+strings.Repeat("x", 5000), 414, &e)
}

// TestHealth_noDecodeErrors: a capture with no decode error reports an
// empty count by reason, {} as JSON, not null, in the totals and for each
// capturer.
func TestHealth_noDecodeErrors(t *testing.T) {
	f := newFixture(t, nil)
	f.live.Apply("cap", live.Batch{Seq: 1, Stats: record.CaptureStats{Packets: 10, Bytes: 600}, ReceivedAt: f.clock.Now()})
	code, body, _ := f.get(t, "/api/health")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if n := strings.Count(string(body), `"decode_errors":{}`); n != 2 {
		t.Errorf(`"decode_errors":{} appears %d times, want 2 (totals and the capturer): %s`, n, body)
	}
	if strings.Contains(string(body), "null") {
		t.Errorf("null in %s", body)
	}
}
