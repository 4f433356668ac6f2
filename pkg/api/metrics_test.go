package api

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/metrics"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// scrape fetches /metrics and parses it with Prometheus' parser, keyed by
// name{label=value,...} with the labels sorted.
func scrape(t testing.TB, f *fixture) (map[string]float64, map[string]string) {
	t.Helper()
	code, body, resp := f.get(t, "/metrics")
	if code != 200 || resp.Header.Get("Content-Type") != metrics.ContentType {
		t.Fatalf("GET /metrics: got %d %q", code, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("expfmt: %v\n%s", err, body)
	}
	values := make(map[string]float64)
	types := make(map[string]string)
	for name, fam := range fams {
		types[name] = fam.GetType().String()
		for _, m := range fam.GetMetric() {
			key := name
			var labels []string
			for _, lp := range m.GetLabel() {
				switch {
				case lp.GetName() == "proto", lp.GetName() == "direction", lp.GetName() == "reason":
				case name == "go_info" && lp.GetName() == "version":
				default:
					// Addresses and ports would make unbounded series.
					t.Errorf("%s: label %q is not one of proto, direction, reason (or go_info's version)", name, lp.GetName())
				}
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			if len(labels) > 0 {
				slices.Sort(labels)
				key += "{" + strings.Join(labels, ",") + "}"
			}
			v := m.GetGauge().GetValue()
			if fam.GetType().String() == "COUNTER" {
				v = m.GetCounter().GetValue()
			}
			values[key] = v
		}
	}
	return values, types
}

// TestServer_metrics: /metrics parses with Prometheus' own parser and
// carries the live numbers.
func TestServer_metrics(t *testing.T) {
	f := newFedFixture(t, nil)
	dialStream(t, f, "?flows=1")
	// The store's traffic totals, as the ingest copies them into the
	// live view: liveFlows' two tcp flows (70 + 190 packets, 53000 +
	// 19000 bytes) and one udp (4, 450), all outbound.
	f.live.SetTraffic(1, []live.TrafficCount{
		{TrafficKey: live.TrafficKey{Proto: "tcp", Direction: "outbound"}, Packets: 260, Bytes: 72000},
		{TrafficKey: live.TrafficKey{Proto: "udp", Direction: "outbound"}, Packets: 4, Bytes: 450},
	})
	got, types := scrape(t, f)
	want := map[string]float64{
		"lightshark_traffic_packets_total{direction=outbound,proto=tcp}": 260,
		"lightshark_traffic_bytes_total{direction=outbound,proto=tcp}":   72000,
		"lightshark_traffic_packets_total{direction=outbound,proto=udp}": 4,
		"lightshark_traffic_bytes_total{direction=outbound,proto=udp}":   450,
		"lightshark_capture_packets_total":                               1500,
		"lightshark_capture_bytes_total":                                 150000,
		"lightshark_capture_kernel_received_total":                       1500,
		"lightshark_capture_kernel_drops_total":                          0,
		"lightshark_capture_decode_errors_total{reason=truncated}":       5,
		"lightshark_capture_decode_errors_total{reason=bad_ipv4_header}": 1,
		"lightshark_capture_flow_evictions_total":                        2,
		"lightshark_capture_flows_total":                                 3,
		"lightshark_capture_active_flows":                                3,
		"lightshark_capturers_connected":                                 1,
		"lightshark_active_flows":                                        3,
		"lightshark_live_flow_evictions_total":                           0,
		"lightshark_ingest_batches_total":                                2,
		"lightshark_ingest_lag_seconds":                                  0,
		"lightshark_last_batch_timestamp_seconds":                        float64(t0.Unix()),
		"lightshark_store_errors_total":                                  0,
		"lightshark_healthy":                                             1,
		"lightshark_packets_per_second":                                  500,
		"lightshark_bytes_per_second":                                    50000,
		"lightshark_db_size_bytes":                                       123456,
		"lightshark_websocket_clients":                                   1,
		"lightshark_websocket_flow_updates_dropped_total":                0,
		"lightshark_start_time_seconds":                                  float64(f.live.Started.Unix()),
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: got %v (present %v), want %v", k, g, ok, v)
		}
	}
	for name, typ := range types {
		if strings.HasSuffix(name, "_total") != (typ == "COUNTER") {
			t.Errorf("%s: type %s; counters, and only they, end in _total", name, typ)
		}
	}

	// Kernel drops and a store failure show, and health follows.
	f.live.Apply("cap-1", live.Batch{Seq: 3, Stats: record.CaptureStats{Packets: 1600, Bytes: 160000, KernelDrops: 42}, ReceivedAt: t0})
	f.live.SetStoreError(errors.New("database or disk is full"))
	got, _ = scrape(t, f)
	for k, v := range map[string]float64{
		"lightshark_capture_kernel_drops_total": 42,
		"lightshark_store_errors_total":         1,
		"lightshark_healthy":                    0,
	} {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", k, got[k], v)
		}
	}
}

// sqliteStore is a Store that also reports SQLite's memory, as
// pkg/apiserver's adapter passes on store.SQLiteMemory.
type sqliteStore struct {
	Store
	used, high int64
	err        error
}

func (s sqliteStore) SQLiteMemory() (used, highwater int64, err error) {
	return s.used, s.high, s.err
}

// TestServer_metricsProcess: /metrics carries the process and Go runtime
// families under client_golang's names, and SQLite's memory when the store
// reports it.
func TestServer_metricsProcess(t *testing.T) {
	got, types := scrape(t, newFixture(t, nil))
	// Registered by metrics.RegisterProcess, whose tests check every
	// family: here, that the API server's registry has them.
	if v := got["go_goroutines"]; types["go_goroutines"] != "GAUGE" || v < 1 {
		t.Errorf("go_goroutines: got %v of type %q", v, types["go_goroutines"])
	}
	if v := got["go_info{version="+runtime.Version()+"}"]; v != 1 {
		t.Errorf("go_info{version=%s}: got %v, want 1", runtime.Version(), v)
	}
	if v := got["process_resident_memory_bytes"]; runtime.GOOS == "linux" && (types["process_resident_memory_bytes"] != "GAUGE" || v <= 0) {
		t.Errorf("process_resident_memory_bytes: got %v of type %q", v, types["process_resident_memory_bytes"])
	}
	// memStore does not report SQLite's memory.
	for _, name := range []string{"lightshark_sqlite_memory_bytes", "lightshark_sqlite_memory_highwater_bytes"} {
		if v, ok := got[name]; ok {
			t.Errorf("%s without a SQLite store: got %v, want no sample", name, v)
		}
	}

	for _, tc := range []struct {
		name string
		st   sqliteStore
		want map[string]float64 // nil: no samples
	}{
		{"reported", sqliteStore{used: 3 << 20, high: 5 << 20}, map[string]float64{
			"lightshark_sqlite_memory_bytes":           3 << 20,
			"lightshark_sqlite_memory_highwater_bytes": 5 << 20,
		}},
		{"error", sqliteStore{err: errors.New("memory statistics off")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(s *Server) {
				tc.st.Store = s.Store
				s.Store = tc.st
			})
			got, _ := scrape(t, f)
			for _, name := range []string{"lightshark_sqlite_memory_bytes", "lightshark_sqlite_memory_highwater_bytes"} {
				v, ok := got[name]
				want, wantOK := tc.want[name]
				if ok != wantOK || v != want {
					t.Errorf("%s: got %v (present %v), want %v (present %v)", name, v, ok, want, wantOK)
				}
			}
		})
	}
}
