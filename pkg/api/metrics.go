package api

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/metrics"
)

// newRegistry builds /metrics. Each family reads s.scrape, the snapshot
// of the live state taken once per scrape. Labels are bounded: protocol,
// flow direction and decode error reason; never an address or a port.
func (s *Server) newRegistry() *metrics.Registry {
	r := metrics.NewRegistry()
	snap := func() *live.Snapshot { return &s.scrape }
	counter := func(name, help string, v func(*live.Snapshot) uint64) {
		r.Collect(name, help, metrics.CounterType, nil, func(emit func(float64, ...string)) {
			emit(float64(v(snap())))
		})
	}
	gauge := func(name, help string, v func(*live.Snapshot) float64) {
		r.Collect(name, help, metrics.GaugeType, nil, func(emit func(float64, ...string)) {
			emit(v(snap()))
		})
	}
	traffic := []string{"proto", "direction"}

	// The traffic totals are the store's, kept in each batch's
	// transaction (store.DB.Traffic): exact whatever the live view holds.
	r.Collect("lightshark_traffic_packets_total",
		"Packets of the flows in the history, both flow directions, by protocol and flow direction (inbound, outbound, internal, unknown): each flow record counted once, when its batch is committed.",
		metrics.CounterType, traffic, func(emit func(float64, ...string)) {
			for _, t := range snap().Traffic {
				emit(float64(t.Packets), t.Proto, t.Direction)
			}
		})
	r.Collect("lightshark_traffic_bytes_total",
		"Bytes on the wire of the flows in the history, both flow directions, by protocol and flow direction: each flow record counted once, when its batch is committed.",
		metrics.CounterType, traffic, func(emit func(float64, ...string)) {
			for _, t := range snap().Traffic {
				emit(float64(t.Bytes), t.Proto, t.Direction)
			}
		})
	counter("lightshark_capture_packets_total", "Frames the capturers read, whatever became of them.",
		func(l *live.Snapshot) uint64 { return l.Capture.Packets })
	counter("lightshark_capture_bytes_total", "Bytes on the wire of the frames the capturers read.",
		func(l *live.Snapshot) uint64 { return l.Capture.Bytes })
	counter("lightshark_capture_kernel_received_total", "Packets the kernel delivered to the capture socket (PACKET_STATISTICS).",
		func(l *live.Snapshot) uint64 { return l.Capture.KernelReceived })
	counter("lightshark_capture_kernel_drops_total", "Packets the kernel dropped because the capture ring was full.",
		func(l *live.Snapshot) uint64 { return l.Capture.KernelDrops })
	r.Collect("lightshark_capture_decode_errors_total", "Frames that could not be decoded, by reason.",
		metrics.CounterType, []string{"reason"}, func(emit func(float64, ...string)) {
			for reason, n := range snap().Capture.DecodeErrors {
				emit(float64(n), reason)
			}
		})
	counter("lightshark_capture_non_ip_packets_total", "Frames without IP (ARP, LLDP...).",
		func(l *live.Snapshot) uint64 { return l.Capture.NonIP })
	counter("lightshark_capture_filtered_packets_total", "Frames rejected by a user-space filter (capture files only).",
		func(l *live.Snapshot) uint64 { return l.Capture.Filtered })
	counter("lightshark_capture_flows_total", "Flows the capturers created.",
		func(l *live.Snapshot) uint64 { return l.Capture.Flows })
	counter("lightshark_capture_flow_evictions_total", "Flows exported early because the capturer's flow table was full (--max-flows).",
		func(l *live.Snapshot) uint64 { return l.Capture.Evictions })
	counter("lightshark_capture_samples_skipped_total", "Packet samples not kept because a batch's sample bound was reached.",
		func(l *live.Snapshot) uint64 { return l.Capture.SamplesSkipped })
	gauge("lightshark_capture_active_flows", "Flows in the capturers' flow tables.",
		func(l *live.Snapshot) float64 { return float64(l.Capture.ActiveFlows) })
	gauge("lightshark_capture_fragments_pending", "IP fragments held until their first fragment arrives.",
		func(l *live.Snapshot) float64 { return float64(l.Capture.FragmentsPending) })
	gauge("lightshark_capturers_connected", "Capturer instances connected.",
		func(l *live.Snapshot) float64 { return float64(l.Health.CapturersConnected) })

	gauge("lightshark_active_flows", "Active flows: those in the connected capturers' flow tables (with none connected, those the live view still holds).",
		func(l *live.Snapshot) float64 { return float64(l.ActiveFlows) })
	gauge("lightshark_live_view_flows", "Active flows held by the API server's live view (at most its maximum; /api/live and the stream draw on it).",
		func(l *live.Snapshot) float64 { return float64(l.ViewFlows) })
	counter("lightshark_live_flow_evictions_total", "Active flows the live view evicted because it held its maximum.",
		func(l *live.Snapshot) uint64 { return l.FlowEvictions })
	counter("lightshark_live_stale_flows_total", "Active flows the live view dropped after no update for a long time.",
		func(l *live.Snapshot) uint64 { return l.StaleFlows })
	counter("lightshark_ingest_batches_total", "Batches applied to the live view after their commit.",
		func(l *live.Snapshot) uint64 { return l.Batches })
	gauge("lightshark_ingest_lag_seconds", "Time from receiving the latest batch to applying it to the live view (mostly its store commit).",
		func(l *live.Snapshot) float64 { return l.IngestLag.Seconds() })
	gauge("lightshark_last_batch_timestamp_seconds", "Unix time of the latest batch (0: none yet).",
		func(l *live.Snapshot) float64 { return unixSeconds(l.LastBatch) })
	counter("lightshark_store_errors_total", "Failed store writes.",
		func(l *live.Snapshot) uint64 { return l.StoreErrors })
	gauge("lightshark_healthy", "1 when /api/health is ok, 0 when degraded.",
		func(l *live.Snapshot) float64 {
			if l.Health.OK {
				return 1
			}
			return 0
		})
	gauge("lightshark_packets_per_second", "Packets per second over the live view's rate window.",
		func(l *live.Snapshot) float64 { return l.PacketsPerSecond })
	gauge("lightshark_bytes_per_second", "Bytes per second over the live view's rate window.",
		func(l *live.Snapshot) float64 { return l.BytesPerSecond })
	gauge("lightshark_start_time_seconds", "Unix time the live view started.",
		func(l *live.Snapshot) float64 { return unixSeconds(s.Live.Started) })

	r.Collect("lightshark_db_size_bytes", "Size of the history database on disk (main file and WAL).",
		metrics.GaugeType, nil, func(emit func(float64, ...string)) {
			if s.Store == nil {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := s.Store.Size(ctx)
			if err != nil {
				s.errLog.Error("read database size", err)
				return
			}
			emit(float64(n))
		})

	// SQLite allocates outside the Go heap: go_memstats_* do not see
	// its page caches, process_resident_memory_bytes does.
	sqliteMemory := func(name, help string, v func(used, highwater int64) int64) {
		r.Collect(name, help, metrics.GaugeType, nil, func(emit func(float64, ...string)) {
			m, ok := s.Store.(sqliteMemoryStore)
			if !ok {
				return
			}
			used, high, err := m.SQLiteMemory()
			if err != nil {
				s.errLog.Error("read SQLite memory", err)
				return
			}
			emit(float64(v(used, high)))
		})
	}
	sqliteMemory("lightshark_sqlite_memory_bytes", "Memory SQLite has allocated now, outside the Go heap: page caches, schemas, prepared statements.",
		func(used, _ int64) int64 { return used })
	sqliteMemory("lightshark_sqlite_memory_highwater_bytes", "The most memory SQLite has had allocated at once since the process started.",
		func(_, high int64) int64 { return high })

	hub := s.Live.Hub
	r.Collect("lightshark_websocket_clients", "WebSocket clients of /api/stream.",
		metrics.GaugeType, nil, func(emit func(float64, ...string)) {
			emit(float64(hub.Stats().Subscribers))
		})
	r.Collect("lightshark_websocket_flow_updates_sent_total", "Flow updates handed to WebSocket clients.",
		metrics.CounterType, nil, func(emit func(float64, ...string)) {
			emit(float64(hub.Stats().Sent))
		})
	r.Collect("lightshark_websocket_flow_updates_dropped_total", "Flow updates dropped because a WebSocket client did not keep up.",
		metrics.CounterType, nil, func(emit func(float64, ...string)) {
			emit(float64(hub.Stats().Dropped))
		})

	// process_* and go_*, as client_golang names them.
	r.RegisterProcess()
	return r
}

// sqliteMemoryStore is what a Store may add for /metrics: the bytes SQLite
// has allocated in the process now and the most it has had at once, which
// a Store backed by pkg/store passes on from store.SQLiteMemory. Without
// it, lightshark_sqlite_memory_bytes and
// lightshark_sqlite_memory_highwater_bytes have no samples. It is not part
// of Store so that a Store need not be backed by SQLite.
type sqliteMemoryStore interface {
	SQLiteMemory() (used, highwater int64, err error)
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	s.scrapeMu.Lock()
	s.scrape = s.Live.Snapshot()
	err := s.registry.WriteText(&buf)
	s.scrapeMu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "write metrics: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", metrics.ContentType)
	_, _ = w.Write(buf.Bytes())
}
