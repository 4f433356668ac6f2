package api

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// TestServer_Series_params: the range, step and buckets the handler asks
// the store for, worked out by hand from the fixture's clock (t0 =
// 2026-03-01T12:00:00Z, on every step's boundary).
func TestServer_Series_params(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name    string
		query   string
		window  time.Duration
		since   string
		step    int64
		buckets int
	}{
		// The hour ending now: 30 s makes exactly 120 buckets.
		{"default", "", 0, "2026-03-01T11:00:00Z", 30, 120},
		// Since off a 30 s boundary: 30 s would make 121 buckets (from
		// 10:59:30), 60 s makes 61 (from 10:59:00).
		{"unaligned", "?since=2026-03-01T10:59:50Z", 0, "2026-03-01T10:59:00Z", 60, 61},
		{"day", "?since=2026-02-28T12:00:00Z", 0, "2026-02-28T12:00:00Z", 900, 96},
		{"unix ms", "?since=1772362800000&until=1772364600000", 0, "2026-03-01T11:00:00Z", 15, 120},
		// Windows of 60 s: never a step below them.
		{"windows", "", time.Minute, "2026-03-01T11:00:00Z", 60, 60},
		// A 45 s window: the first nice step that is a multiple is 900.
		{"odd window", "", 45 * time.Second, "2026-03-01T11:00:00Z", 900, 4},
		// A window that divides no nice step: multiples of it.
		{"window 7", "", 7 * time.Second, "2026-03-01T10:59:55Z", 35, 103},
		// Step given: since rounded down to it: 10:59:55 is a multiple
		// of 7 s since 1970; 3605 s / 7 s → 515 buckets.
		{"step", "?step=7", 0, "2026-03-01T10:59:55Z", 7, 515},
		// Rounded up to a multiple of the window.
		{"step window", "?step=90", time.Minute, "2026-03-01T11:00:00Z", 120, 30},
		{"step big", "?step=86400", 0, "2026-03-01T00:00:00Z", 86400, 1},
		// Ten years (3652 days): beyond the nice steps, multiples of a
		// day: ⌈3652/119⌉ = 31 days, from 2016-02-02 (a multiple of 31
		// days since 1970).
		{"decade", "?since=2016-03-01T12:00:00Z", 0, "2016-02-02T00:00:00Z", 31 * 86400, 119},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.store.window = tc.window
			var resp SeriesResponse
			f.getJSON(t, "/api/series"+tc.query, 200, &resp)
			qs := f.store.seriesQ
			if len(qs) != 1 {
				t.Fatalf("store asked %d times", len(qs))
			}
			q := qs[0]
			if !q.Since.Equal(at(tc.since)) || q.Step != time.Duration(tc.step)*time.Second || q.Buckets != tc.buckets {
				t.Errorf("got since %v step %v buckets %d, want %s %ds %d", q.Since, q.Step, q.Buckets, tc.since, tc.step, tc.buckets)
			}
			until := at(tc.since).Add(time.Duration(tc.step*int64(tc.buckets)) * time.Second)
			if !resp.Since.Equal(at(tc.since)) || !resp.Until.Equal(until) || resp.StepSeconds != tc.step || resp.Buckets != tc.buckets {
				t.Errorf("response %+v, want since %s until %v step %d buckets %d", resp, tc.since, until, tc.step, tc.buckets)
			}
			if q.By != "proto" || q.Metric != "bytes" || resp.By != "proto" || resp.Metric != "bytes" {
				t.Errorf("defaults: query by %q metric %q, response %q %q", q.By, q.Metric, resp.By, resp.Metric)
			}
		})
	}
}

// TestServer_Series_filters: by, metric and the flow filters reach the
// store; since and until are not flow filters.
func TestServer_Series_filters(t *testing.T) {
	f := newFixture(t, nil)
	var resp SeriesResponse
	f.getJSON(t, "/api/series?by=peer&metric=packets&ip=10.0.0.1&cidr=10.0.0.0/8&port=443&proto=TCP&state=sf&direction=inbound", 200, &resp)
	q := f.store.seriesQ[0]
	if q.By != "peer" || q.Metric != "packets" || resp.By != "peer" || resp.Metric != "packets" {
		t.Errorf("by %q metric %q", q.By, q.Metric)
	}
	fl := q.Filter
	if fl.IP.String() != "10.0.0.1" || fl.CIDR.String() != "10.0.0.0/8" || fl.Port != 443 || fl.Proto != "tcp" ||
		fl.State != "SF" || fl.Direction != record.DirInbound || !fl.Since.IsZero() || !fl.Until.IsZero() {
		t.Errorf("filter %+v", fl)
	}
}

// TestServer_Series_response: the JSON of the contract, with the store's
// series as they are, and [] for none.
func TestServer_Series_response(t *testing.T) {
	f := newFixture(t, nil)
	f.store.series = &SeriesResult{Source: "windows", Exact: true, Series: []SeriesData{
		{Key: "tcp", Total: 30, Values: []uint64{10, 20}}, {Key: "other", Total: 1, Values: []uint64{0, 1}}}}
	code, body, _ := f.get(t, "/api/series?since=2026-03-01T11:58:00Z&step=60")
	if code != 200 {
		t.Fatalf("got %d: %s", code, body)
	}
	want := `{"since":"2026-03-01T11:58:00Z","until":"2026-03-01T12:00:00Z","step_seconds":60,"buckets":2,"by":"proto","metric":"bytes","source":"windows","exact":true,"series":[{"key":"tcp","total":30,"values":[10,20]},{"key":"other","total":1,"values":[0,1]}]}`
	if got := strings.TrimSpace(string(body)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	f.store.series = &SeriesResult{Source: "flows"}
	var m map[string]any
	f.getJSON(t, "/api/series", 200, &m)
	if s, ok := m["series"].([]any); !ok || len(s) != 0 || m["exact"] != false || m["source"] != "flows" {
		t.Errorf("empty: got %v", m)
	}
}

// TestServer_Series_badRequest: bad input is a 400 naming the parameter,
// and the store is not asked.
func TestServer_Series_badRequest(t *testing.T) {
	for _, tc := range []struct{ query, param string }{
		{"step=abc", "step"},
		{"step=0", "step"},
		{"step=-5", "step"},
		{"step=1", "step"}, // 3600 buckets
		{"step=31536001", "step"},
		{"by=port", "by"},
		{"metric=flows", "metric"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-03-01T12:00:00Z&until=2026-03-01T11:00:00Z", "until"},
		{"since=2026-03-01T13:00:00Z", "since"}, // after now
		{"ip=10.0.0.256", "ip"},
		{"cidr=10.0.0.0/33", "cidr"},
		{"port=70000", "port"},
		{"proto=bogus", "proto"},
		{"state=XX", "state"},
		{"direction=sideways", "direction"},
		{"limit=5", "limit"},
		{"step=60&step=60", "step"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			f := newFixture(t, nil)
			var e errorBody
			f.getJSON(t, "/api/series?"+tc.query, 400, &e)
			if e.Parameter != tc.param || !strings.HasPrefix(e.Error, tc.param+":") {
				t.Errorf("got %+v, want parameter %q", e, tc.param)
			}
			if len(f.store.seriesQ) != 0 {
				t.Errorf("store asked: %+v", f.store.seriesQ)
			}
		})
	}
	// A store that refuses the query: 400 with its words.
	f := newFixture(t, nil)
	f.store.setErr(ErrBadQuery)
	var e errorBody
	f.getJSON(t, "/api/series", 400, &e)
}

// TestServer_Series_token: /api/series wants the token; /api/health says
// so, and stays public.
func TestServer_Series_token(t *testing.T) {
	f := newFixture(t, func(s *Server) { s.Token = "s3cret" })
	if code, body, _ := f.get(t, "/api/series"); code != 401 {
		t.Errorf("without token: got %d %s, want 401", code, body)
	}
	if code, body, _ := f.get(t, "/api/series", "Authorization", "Bearer nope"); code != 401 {
		t.Errorf("wrong token: got %d %s, want 401", code, body)
	}
	if code, body, _ := f.get(t, "/api/series", "Authorization", "Bearer s3cret"); code != 200 {
		t.Errorf("with token: got %d %s, want 200", code, body)
	}
	if code, _, _ := f.get(t, "/api/series?access_token="+url.QueryEscape("s3cret")); code != 401 {
		t.Errorf("access_token in the query: got %d, want 401 (only /api/stream takes it)", code)
	}
	var h map[string]any
	f.getJSON(t, "/api/health", 200, &h)
	if h["auth_required"] != true {
		t.Errorf("health auth_required: got %v, want true", h["auth_required"])
	}
	open := newFixture(t, nil)
	h = nil
	open.getJSON(t, "/api/health", 200, &h)
	if v, ok := h["auth_required"]; !ok || v != false {
		t.Errorf("health without token: auth_required %v (present %v), want false", v, ok)
	}
}

// TestServer_Stats_inOut: /api/stats and the stream's stats message carry
// the live view's in and out rates.
func TestServer_Stats_inOut(t *testing.T) {
	f := newFixture(t, nil)
	f.live.RateWindow = 10 * time.Second
	out := mkFlow("1", "tcp", "10.0.0.1", 40000, "1.1.1.1", 443, t0.Add(-time.Second), t0, 1, 100, 2, 2000)
	in := mkFlow("2", "tcp", "1.1.1.2", 40000, "10.0.0.1", 22, t0.Add(-time.Second), t0, 3, 300, 4, 4000)
	in.Direction = record.DirInbound
	internal := mkFlow("3", "udp", "10.0.0.1", 40000, "10.0.0.2", 53, t0.Add(-time.Second), t0, 5, 500, 5, 500)
	internal.Direction = record.DirInternal
	f.live.Apply("c", live0(1, t0, out, in, internal))
	f.clock.Advance(2 * time.Second)
	out.PacketsSent, out.BytesSent, out.PacketsReceived, out.BytesReceived = 11, 1100, 22, 22000
	in.PacketsSent, in.BytesSent, in.PacketsReceived, in.BytesReceived = 13, 1300, 4, 4000
	internal.PacketsSent, internal.BytesSent = 500, 50000
	f.live.Apply("c", live0(2, f.clock.Now(), out, in, internal))
	// Over the 2 s since the first point: out = out's sent (10, 1000) +
	// in's received (0); in = out's received (20, 20000) + in's sent
	// (10, 1000); the internal flow counts in neither.
	var st map[string]float64
	code, body, _ := f.get(t, "/api/stats")
	if code != 200 {
		t.Fatalf("got %d", code)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"packets_out_per_second": 5, "bytes_out_per_second": 500,
		"packets_in_per_second": 15, "bytes_in_per_second": 10500}
	for k, v := range want {
		if got, ok := st[k]; !ok || got != v {
			t.Errorf("%s: got %v (present %v), want %v", k, got, ok, v)
		}
	}
	b, err := json.Marshal(newStatsMessage(f.live.Stats(), f.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]any
	if err := json.Unmarshal(b, &msg); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if msg[k] != v {
			t.Errorf("stream stats %s: got %v, want %v", k, msg[k], v)
		}
	}
}

func live0(seq uint64, at time.Time, flows ...record.Flow) live.Batch {
	return live.Batch{Seq: seq, Flows: flows, ReceivedAt: at}
}
