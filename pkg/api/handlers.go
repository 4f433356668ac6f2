package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// HealthResponse is GET /api/health. status, active_connections and
// total_packets are the original tool's fields.
type HealthResponse struct {
	// Status is "ok" or "degraded".
	Status string `json:"status"`
	// Reasons say why the status is degraded (empty when ok).
	Reasons           []string `json:"reasons"`
	ActiveConnections int      `json:"active_connections"`
	TotalPackets      uint64   `json:"total_packets"`
	TotalBytes        uint64   `json:"total_bytes"`
	UptimeSeconds     int64    `json:"uptime_seconds"`
	// CapturersConnected counts capturer instances connected now.
	CapturersConnected int `json:"capturers_connected"`
	// LastBatch is when the latest batch arrived, absent before the first.
	LastBatch           *time.Time `json:"last_batch,omitempty"`
	LastBatchAgeSeconds *float64   `json:"last_batch_age_seconds,omitempty"`
	// KernelDropsRecent are the packets the kernel dropped in the last
	// minute (live.State.DropWindow).
	KernelDropsRecent uint64 `json:"kernel_drops_recent"`
	// StoreError is the latest store write error, absent when it works.
	StoreError string `json:"store_error,omitempty"`
	// Capture sums the capture counters of every capturer instance.
	Capture record.CaptureStats `json:"capture"`
	// Capturers are the instances tracked, by id.
	Capturers []CapturerStatus `json:"capturers"`
	// AuthRequired tells a client (the dashboard) whether the other
	// endpoints want the API token.
	AuthRequired bool `json:"auth_required"`
}

// CapturerStatus is one capturer instance in /api/health. Finished is set
// once the instance read its source to the end (an import) and its last
// batch is committed: gone, it is not counted as a lost capturer.
type CapturerStatus struct {
	InstanceID string              `json:"instance_id"`
	Connected  bool                `json:"connected"`
	Finished   bool                `json:"finished"`
	FirstSeen  time.Time           `json:"first_seen"`
	LastBatch  time.Time           `json:"last_batch"`
	LastSeq    uint64              `json:"last_seq"`
	Batches    uint64              `json:"batches"`
	Stats      record.CaptureStats `json:"stats"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	snap := s.Live.Snapshot()
	h := snap.Health
	resp := HealthResponse{
		Status:             "ok",
		Reasons:            h.Reasons,
		ActiveConnections:  snap.ActiveFlows,
		TotalPackets:       snap.TotalPackets,
		TotalBytes:         snap.TotalBytes,
		UptimeSeconds:      int64(snap.Uptime / time.Second),
		CapturersConnected: h.CapturersConnected,
		KernelDropsRecent:  h.KernelDropsRecent,
		StoreError:         h.StoreError,
		Capture:            snap.Capture,
		Capturers:          []CapturerStatus{},
		AuthRequired:       s.Token != "",
	}
	if !h.OK {
		resp.Status = "degraded"
	}
	if resp.Reasons == nil {
		resp.Reasons = []string{}
	}
	resp.Capture.DecodeErrors = nonNil(resp.Capture.DecodeErrors)
	if !h.LastBatch.IsZero() {
		t := h.LastBatch.UTC()
		age := max(s.Now().Sub(t), 0).Seconds()
		resp.LastBatch, resp.LastBatchAgeSeconds = &t, &age
	}
	for _, c := range snap.Capturers {
		resp.Capturers = append(resp.Capturers, CapturerStatus{
			InstanceID: c.InstanceID,
			Connected:  c.Connected,
			Finished:   c.Finished,
			FirstSeen:  c.FirstSeen.UTC(),
			LastBatch:  c.LastBatch.UTC(),
			LastSeq:    c.LastSeq,
			Batches:    c.Batches,
			Stats:      c.Stats,
		})
		resp.Capturers[len(resp.Capturers)-1].Stats.DecodeErrors = nonNil(c.Stats.DecodeErrors)
	}
	writeJSON(w, http.StatusOK, resp)
}

// nonNil makes a count by reason with no entry {} in JSON rather than null.
func nonNil(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return m
}

// LiveResponse is GET /api/live: the top connections by packets, in the
// original tool's shape, each with its flow record.
type LiveResponse struct {
	Connections       []LiveConnection `json:"connections"`
	TotalPackets      uint64           `json:"total_packets"`
	TotalBytes        uint64           `json:"total_bytes"`
	ActiveConnections int              `json:"active_connections"`
}

// LiveConnection is one connection of /api/live.
type LiveConnection struct {
	// Connection is "SRC:PORT -> DST:PORT", originator first (IPv6 in
	// brackets).
	Connection string      `json:"connection"`
	Stats      LiveStats   `json:"stats"`
	Flow       record.Flow `json:"flow"`
}

// LiveStats are a connection's counters: bytes_sent, bytes_received and
// packets_count are the original's (now truly per direction).
type LiveStats struct {
	BytesSent       uint64 `json:"bytes_sent"`
	BytesReceived   uint64 `json:"bytes_received"`
	PacketsCount    uint64 `json:"packets_count"`
	PacketsSent     uint64 `json:"packets_sent"`
	PacketsReceived uint64 `json:"packets_received"`
}

func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery, nil)
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	limit, err := p.intParam("limit", DefaultLiveLimit, 1, MaxLiveLimit)
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	// The response depends on the live state alone, which changes once
	// per batch: requests in between get the same bytes.
	ver := s.Live.Version()
	if body := s.liveCache.get(ver, limit); body != nil {
		writeJSONBytes(w, body)
		return
	}
	st := s.Live.Stats()
	resp := LiveResponse{
		Connections:       []LiveConnection{},
		TotalPackets:      st.TotalPackets,
		TotalBytes:        st.TotalBytes,
		ActiveConnections: st.ActiveFlows,
	}
	for _, f := range s.Live.TopFlows(limit) {
		resp.Connections = append(resp.Connections, LiveConnection{
			Connection: endpoint(f.SrcIP, f.SrcPort) + " -> " + endpoint(f.DstIP, f.DstPort),
			Stats: LiveStats{
				BytesSent:       f.BytesSent,
				BytesReceived:   f.BytesReceived,
				PacketsCount:    f.PacketsSent + f.PacketsReceived,
				PacketsSent:     f.PacketsSent,
				PacketsReceived: f.PacketsReceived,
			},
			Flow: f,
		})
	}
	body, err := json.Marshal(resp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode: "+err.Error())
		return
	}
	body = append(body, '\n')
	s.liveCache.put(ver, limit, body)
	writeJSONBytes(w, body)
}

// responseCache holds the latest /api/live body, by live state version and
// limit. The body of version v may hold a slightly newer state than v (it
// was computed after v was read), never an older one.
type responseCache struct {
	mu    sync.Mutex
	ver   uint64
	limit int
	body  []byte
}

func (c *responseCache) get(ver uint64, limit int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.body != nil && c.ver == ver && c.limit == limit {
		return c.body
	}
	return nil
}

func (c *responseCache) put(ver uint64, limit int, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ver, c.limit, c.body = ver, limit, body
}

// writeJSONBytes answers 200 with an encoded JSON body.
func writeJSONBytes(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// endpoint formats ip:port, with IPv6 in brackets.
func endpoint(ip string, port uint16) string {
	if a, err := netip.ParseAddr(ip); err == nil {
		return netip.AddrPortFrom(a, port).String()
	}
	return ip + ":" + strconv.Itoa(int(port))
}

// StatsResponse is GET /api/stats. The rates are over the last
// RateWindowSeconds, not averages since start. The in and out rates are
// those of the traffic the watched namespace received and sent (see
// live.Stats): internal and unknown-direction flows count in neither.
type StatsResponse struct {
	UptimeSeconds     int64  `json:"uptime_seconds"`
	TotalPackets      uint64 `json:"total_packets"`
	TotalBytes        uint64 `json:"total_bytes"`
	ActiveConnections int    `json:"active_connections"`
	Rates
	RateWindowSeconds float64 `json:"rate_window_seconds"`
}

// Rates are the current rates of /api/stats and the stream's stats
// messages, in their JSON object.
type Rates struct {
	PacketsPerSecond    float64 `json:"packets_per_second"`
	BytesPerSecond      float64 `json:"bytes_per_second"`
	PacketsInPerSecond  float64 `json:"packets_in_per_second"`
	PacketsOutPerSecond float64 `json:"packets_out_per_second"`
	BytesInPerSecond    float64 `json:"bytes_in_per_second"`
	BytesOutPerSecond   float64 `json:"bytes_out_per_second"`
}

func ratesOf(st *live.Stats) Rates {
	return Rates{
		PacketsPerSecond:    st.PacketsPerSecond,
		BytesPerSecond:      st.BytesPerSecond,
		PacketsInPerSecond:  st.PacketsInPerSecond,
		PacketsOutPerSecond: st.PacketsOutPerSecond,
		BytesInPerSecond:    st.BytesInPerSecond,
		BytesOutPerSecond:   st.BytesOutPerSecond,
	}
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st := s.Live.Stats()
	writeJSON(w, http.StatusOK, StatsResponse{
		UptimeSeconds:     int64(st.Uptime / time.Second),
		TotalPackets:      st.TotalPackets,
		TotalBytes:        st.TotalBytes,
		ActiveConnections: st.ActiveFlows,
		Rates:             ratesOf(&st),
		RateWindowSeconds: s.Live.RateWindow.Seconds(),
	})
}

// handleHistory is GET /api/history?limit=N: the newest packet records
// first. As in the original tool, a limit over the maximum is lowered to
// it (its clients may ask for more); a limit that is not a positive
// integer is a 400.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery, nil)
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	limit := DefaultHistoryLimit
	if v, ok := p.get("limit"); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			s.writeBadRequest(w, badParam("limit", "%s is not a positive integer (at most %d records are returned)", quote(v), MaxHistoryLimit))
			return
		}
		limit = int(min(n, MaxHistoryLimit))
	}
	var samples []record.PacketSample
	if s.Store == nil {
		samples = s.Live.RecentSamples(limit)
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), s.QueryTimeout)
		defer cancel()
		samples, err = s.Store.History(ctx, limit)
		if err != nil {
			s.writeStoreError(w, r, "read history", err)
			return
		}
	}
	if samples == nil {
		samples = []record.PacketSample{}
	}
	writeJSON(w, http.StatusOK, samples)
}

// FlowsResponse is GET /api/flows.
type FlowsResponse struct {
	Flows []record.Flow `json:"flows"`
	// NextCursor fetches the next page (cursor=...); "" after the last.
	NextCursor string `json:"next_cursor"`
}

var flowsParams = withFilterParams("order", "limit", "cursor", "format")

// withFilterParams is the set of the query parameters names and
// filterParams.
func withFilterParams(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, p := range append(names, filterParams...) {
		m[p] = true
	}
	return m
}

func (s *Server) handleFlows(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery, flowsParams)
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	var q FlowQuery
	ndjson := false
	switch f, _ := p.get("format"); f {
	case "", "json":
	case "ndjson":
		ndjson = true
	default:
		s.writeBadRequest(w, badParam("format", "%s is not json or ndjson", quote(f)))
		return
	}
	maxLimit, defLimit := MaxFlowLimit, DefaultFlowLimit
	if ndjson {
		maxLimit, defLimit = maxExportLimit, 0
	}
	if q.Limit, err = p.intParam("limit", defLimit, 1, maxLimit); err == nil {
		if err = p.parseFilters(&q); err == nil {
			if err = p.parseOrder(&q); err == nil {
				err = p.parseCursor(&q)
			}
		}
	}
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	if s.noStore(w) {
		return
	}
	if ndjson {
		s.exportFlows(w, r, q)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.QueryTimeout)
	defer cancel()
	flows, next, err := s.Store.Flows(ctx, q)
	if err != nil {
		s.writeStoreError(w, r, "list flows", err)
		return
	}
	if flows == nil {
		flows = []record.Flow{}
	}
	writeJSON(w, http.StatusOK, FlowsResponse{Flows: flows, NextCursor: next})
}

// exportFlows streams every flow q selects as NDJSON, one record per line,
// in memory bounded by the store's page and a 32 KiB buffer. The write
// deadline moves forward with each flush, so a long export is not cut by
// the server's WriteTimeout while a stalled client still is.
func (s *Server) exportFlows(w http.ResponseWriter, r *http.Request, q FlowQuery) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.WriteTimeout)) // unsupported: keep the server's
	w.Header().Set("Content-Type", "application/x-ndjson")
	cw := &countingWriter{w: w} // cw.n > 0: the status is sent
	bw := bufio.NewWriterSize(cw, 32<<10)
	enc := json.NewEncoder(bw)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		return nil
	}
	var writeErr error
	err := s.Store.EachFlow(r.Context(), q, func(f *record.Flow) error {
		if bw.Available() < 2048 {
			if writeErr = flush(); writeErr != nil {
				return writeErr
			}
		}
		writeErr = enc.Encode(f)
		return writeErr
	})
	switch {
	case err == nil:
		_ = flush()
	case writeErr != nil:
		// The client is gone, or stalled past the write deadline.
	case cw.n == 0:
		s.writeStoreError(w, r, "export flows", err)
	case r.Context().Err() == nil:
		// Too late for a status: end with an error line, which a reader
		// of NDJSON sees as not a flow.
		s.errLog.Error("export flows", err)
		_ = enc.Encode(errorBody{Error: "export flows: " + err.Error()})
		_ = flush()
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// noStore answers 503 when the server has no flow store, and reports
// whether it did.
func (s *Server) noStore(w http.ResponseWriter) bool {
	if s.Store != nil {
		return false
	}
	writeError(w, http.StatusServiceUnavailable, "no flow store configured")
	return true
}

func (s *Server) handleFlow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validFlowID(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("id: %s is not a flow id (hexadecimal)", quote(id)), Parameter: "id"})
		return
	}
	if s.noStore(w) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.QueryTimeout)
	defer cancel()
	f, ok, err := s.Store.Flow(ctx, id)
	if err != nil {
		s.writeStoreError(w, r, "read flow", err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("flow %s not found", quote(id)))
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// validFlowID accepts 1 to 64 hexadecimal digits (flow ids are 16).
func validFlowID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDoc)
}

// statsMessage is the stream's stats message: total_packets, total_bytes
// and active_connections are the original's.
type statsMessage struct {
	Type              string `json:"type"` // "stats"
	TotalPackets      uint64 `json:"total_packets"`
	TotalBytes        uint64 `json:"total_bytes"`
	ActiveConnections int    `json:"active_connections"`
	Rates
	Timestamp int64 `json:"timestamp"` // Unix ms
}

func newStatsMessage(st live.Stats, now time.Time) statsMessage {
	return statsMessage{
		Type:              "stats",
		TotalPackets:      st.TotalPackets,
		TotalBytes:        st.TotalBytes,
		ActiveConnections: st.ActiveFlows,
		Rates:             ratesOf(&st),
		Timestamp:         now.UnixMilli(),
	}
}
