// Package live holds the API server's in-memory view of what is happening
// now: the active flows, the latest capture statistics of each capturer,
// current rates over a sliding window, a bounded ring of recent packet
// samples, the traffic totals by protocol and direction (a copy of the
// store's, see SetTraffic), the inputs of the health check, and a Hub that
// fans flow updates out to WebSocket clients.
//
// Ingest feeds it with State.Apply after each batch is committed to the
// store; the HTTP handlers read it. Every structure is bounded.
//
// It imports only the standard library and pkg/record: never ipc, store,
// capture, decode or flow (LAYOUT.md). Ingest converts an ipc.Batch into a
// Batch.
package live

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Defaults of the State's settings.
const (
	// DefaultMaxFlows is 2048 active flows (about 400 bytes each with
	// their strings: 0.8 MiB), the most recently updated: /api/live shows
	// the top 50 of them. 16384 cost 6 MiB of the API server's heap, and
	// the GC time to scan it, for a 16 MiB budget; with 4096 the heap an
	// ingest of 10,000-record batches keeps live reached the GC's goal
	// under GOMEMLIMIT=12MiB, so the GC ran without pause (400 cycles/s,
	// half the CPU of a 2-core host): 45k flow records/s, against 68k
	// with 2048 (bench.BenchmarkAPIIngest).
	DefaultMaxFlows     = 2048
	DefaultStaleAfter   = 15 * time.Minute
	DefaultRateWindow   = 10 * time.Second
	DefaultHistorySize  = 1024
	DefaultMaxCapturers = 16
	DefaultSilentAfter  = 5 * time.Second
	DefaultDropWindow   = time.Minute

	// maxRatePoints bounds the sliding window's points whatever the batch
	// rate; maxTrafficKeys bounds the proto/direction pairs SetTraffic
	// keeps (the store has at most 256 protocols × 4 directions).
	maxRatePoints = 4096
	// applyChunk is the records Apply handles per hold of the lock.
	applyChunk     = 256
	maxDropEvents  = 1024
	maxTrafficKeys = 1024
	maxErrReasons  = 256
)

// Batch is what ingest hands to Apply: the parts of one IPC batch that the
// live view uses. Slices are read during Apply only; records are copied.
type Batch struct {
	// Seq is the batch's sequence number within its capturer instance.
	// Seq 1 marks a capture that has just started: its counters are all
	// new traffic. The first batch seen of an instance with a later Seq
	// (the API server restarted while the capture ran on) only sets the
	// baseline for rates and drop deltas.
	Seq uint64
	// Flows are updated active flows with cumulative counters.
	Flows []record.Flow
	// Ended are final records; one supersedes a record of the same ID in
	// Flows.
	Ended []record.Flow
	// Samples are sampled packet records, in capture order.
	Samples []record.PacketSample
	// Stats are the capture's cumulative statistics.
	Stats record.CaptureStats
	// ReceivedAt is when the API server received the batch (server clock).
	// It times the rate window; zero means the time of Apply.
	ReceivedAt time.Time
}

// State is the live view. Set the exported fields right after New and
// before the first Apply; do not change them afterwards. All methods are
// safe for concurrent use. The zero value is not usable; call New.
type State struct {
	// MaxFlows bounds the active flows held; beyond it the flow updated
	// least recently is evicted (and counted).
	MaxFlows int
	// StaleAfter removes an active flow with no update for this long (a
	// capturer that died without ending its flows).
	StaleAfter time.Duration
	// RateWindow is the sliding window of PacketsPerSecond and
	// BytesPerSecond.
	RateWindow time.Duration
	// HistorySize is the number of recent packet samples kept.
	HistorySize int
	// MaxCapturers bounds the capturer instances tracked; the one heard
	// from least recently is retired, its counters kept in the totals.
	MaxCapturers int
	// SilentAfter makes health degraded when no batch arrived for longer.
	SilentAfter time.Duration
	// DropWindow makes health degraded while the kernel dropped packets
	// within this much time.
	DropWindow time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Started is when the state was made (for uptime).
	Started time.Time
	// Hub fans flow updates out to subscribers; Apply publishes every
	// record of Flows and Ended to it after updating the state.
	Hub *Hub

	mu        sync.RWMutex
	version   uint64 // changes with every change of the state (under mu)
	flows     map[string]*flowEntry
	lru       flowList // least recently updated first
	samples   []record.PacketSample
	sHead     int
	sLen      int
	capturers map[string]*capturer
	retired   record.CaptureStats // counters of retired capturers
	nRetired  int

	// The sliding window: points of the running sums of new packets and
	// bytes (deltas of cumulative stats), and of the flows' growth in and
	// out (flowGrowth), oldest first.
	points       []ratePoint
	rateP, rateB uint64
	rateIO       inOut
	drops        []dropEvent

	// traffic is the latest copy of the store's totals, sorted, and the
	// version it had (SetTraffic).
	traffic        []TrafficCount
	trafficVersion uint64

	batches    uint64
	lastBatch  time.Time
	ingestLag  time.Duration
	evictions  uint64
	stale      uint64
	ended      uint64
	storeErr   string
	storeSince time.Time
	storeErrs  uint64
}

type ratePoint struct {
	t              time.Time
	packets, bytes uint64
	io             inOut
}

// inOut are packets and bytes received (in) and sent (out) by the watched
// namespace.
type inOut struct {
	packetsIn, packetsOut, bytesIn, bytesOut uint64
}

type dropEvent struct {
	t time.Time
	n uint64
}

// capturer is the latest state of one capturer instance.
type capturer struct {
	id        string
	stats     record.CaptureStats
	firstSeen time.Time
	lastBatch time.Time
	seq       uint64
	batches   uint64
	// tracked is set once SetCapturerConnected was called for the
	// instance; conns counts its open connections since. An instance
	// never tracked counts as connected once it sent a batch, until it
	// finishes.
	tracked bool
	conns   int
	// finished is set once the instance's last batch (ipc.Batch.Done: its
	// source read to the end) is committed: gone, it is done, not lost.
	finished bool
	// seenUntil is the latest last_seen (Unix ns, capture time) of the
	// flow records applied for the instance: a flow the view does not
	// hold that began after it is new, and all its traffic is growth.
	seenUntil int64
}

func (c *capturer) connected() bool { return c.conns > 0 || (!c.tracked && !c.finished) }

// New returns an empty state with the default settings, the current time
// as Started, and a new Hub.
func New() *State {
	return &State{
		MaxFlows:     DefaultMaxFlows,
		StaleAfter:   DefaultStaleAfter,
		RateWindow:   DefaultRateWindow,
		HistorySize:  DefaultHistorySize,
		MaxCapturers: DefaultMaxCapturers,
		SilentAfter:  DefaultSilentAfter,
		DropWindow:   DefaultDropWindow,
		Now:          time.Now,
		Started:      time.Now(),
		Hub:          NewHub(),
		flows:        make(map[string]*flowEntry),
		capturers:    make(map[string]*capturer),
	}
}

// Apply updates the state with a batch committed for the capturer
// instance instanceID, then publishes its flow records to the Hub. It
// never blocks on readers for longer than a read takes, nor on
// subscribers at all.
func (s *State) Apply(instanceID string, b Batch) {
	now := s.Now()
	at := b.ReceivedAt
	if at.IsZero() {
		at = now
	}

	// The records go in chunks, each under the lock, so that a batch of
	// thousands of records never holds readers (/api/live, /api/stats)
	// for more than a chunk's time. A reader may see a batch half
	// applied: its stats, and some of its flows.
	s.mu.Lock()
	s.version++
	newAfter := s.applyStats(instanceID, &b, at)
	s.mu.Unlock()
	var seenUntil int64 // of this batch's records
	for i := 0; i < len(b.Flows); i += applyChunk {
		s.mu.Lock()
		s.version++
		for j := i; j < min(i+applyChunk, len(b.Flows)); j++ {
			f := &b.Flows[j]
			s.countGrowth(f, newAfter)
			s.upsert(f, at)
			seenUntil = max(seenUntil, f.LastSeen.UnixNano())
		}
		s.mu.Unlock()
	}
	for i := 0; i < len(b.Ended); i += applyChunk {
		s.mu.Lock()
		s.version++
		for j := i; j < min(i+applyChunk, len(b.Ended)); j++ {
			f := &b.Ended[j]
			s.countGrowth(f, newAfter)
			s.end(f)
			seenUntil = max(seenUntil, f.LastSeen.UnixNano())
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.version++
	if c := s.capturers[instanceID]; c != nil {
		c.seenUntil = max(c.seenUntil, seenUntil)
	}
	s.addPoint(at) // the flows' growth, at the batch's point
	s.pruneStale(at)
	s.addSamples(b.Samples)
	s.batches++
	if at.After(s.lastBatch) {
		s.lastBatch = at
	}
	s.ingestLag = max(now.Sub(at), 0)
	s.mu.Unlock()

	if s.Hub != nil {
		s.Hub.Publish(b.Flows)
		s.Hub.Publish(b.Ended)
	}
}

// applyStats records the capturer's cumulative statistics and adds what
// they grew by to the rate and drop windows. It returns the time (Unix ns)
// after which a flow record of the batch that the view does not hold is a
// new flow (math.MaxInt64: none is, as the batch only sets the baseline).
func (s *State) applyStats(id string, b *Batch, at time.Time) (newAfter int64) {
	c := s.capturers[id]
	if c == nil {
		c = s.addCapturer(id, at)
	}
	newAfter = c.seenUntil
	var dp, db, dd uint64
	if c.batches == 0 {
		// The first batch seen of this instance (SetCapturerConnected
		// may have added it already).
		if b.Seq == 1 {
			dp, db, dd = b.Stats.Packets, b.Stats.Bytes, b.Stats.KernelDrops
		} else {
			newAfter = math.MaxInt64
		}
	} else {
		dp = delta(c.stats.Packets, b.Stats.Packets)
		db = delta(c.stats.Bytes, b.Stats.Bytes)
		dd = delta(c.stats.KernelDrops, b.Stats.KernelDrops)
	}
	c.stats = b.Stats
	c.stats.DecodeErrors = cloneReasons(b.Stats.DecodeErrors)
	if at.After(c.lastBatch) {
		c.lastBatch = at
	}
	c.seq = b.Seq
	c.batches++

	s.rateP += dp
	s.rateB += db
	s.addPoint(at)
	if dd > 0 {
		s.drops = append(s.drops, dropEvent{t: at, n: dd})
	}
	// Forget drops older than the window (events are in arrival order).
	cut := at.Add(-s.DropWindow)
	i := 0
	for i < len(s.drops) && !s.drops[i].t.After(cut) {
		i++
	}
	i = max(i, len(s.drops)-maxDropEvents)
	if i > 0 {
		s.drops = slices.Delete(s.drops, 0, i)
	}
	return newAfter
}

// countGrowth adds what f's counters grew by over the record of the same
// flow the view holds to the in and out sums, by its direction: an
// outbound flow's originator is local, so what it sent went out; an
// inbound flow's is remote. Internal and unknown flows count in neither.
// A flow the view does not hold counts whole when it began after newAfter
// (Unix ns; it is new), and not at all otherwise: it was evicted
// (MaxFlows) or pruned (StaleAfter), or this is the capturer's first batch
// seen after a restart of the API server, and its counters hold traffic
// counted before or never seen.
func (s *State) countGrowth(f *record.Flow, newAfter int64) {
	if f.Direction != record.DirOutbound && f.Direction != record.DirInbound {
		return
	}
	var ps, pr, bs, br uint64
	if e := s.flows[f.ID]; e != nil {
		o := &e.f
		ps, pr = delta(o.PacketsSent, f.PacketsSent), delta(o.PacketsReceived, f.PacketsReceived)
		bs, br = delta(o.BytesSent, f.BytesSent), delta(o.BytesReceived, f.BytesReceived)
	} else if f.FirstSeen.UnixNano() > newAfter {
		ps, pr, bs, br = f.PacketsSent, f.PacketsReceived, f.BytesSent, f.BytesReceived
	}
	if f.Direction == record.DirInbound {
		// The originator is remote: what it sent came in.
		ps, pr, bs, br = pr, ps, br, bs
	}
	// Outbound, as seen from the originator: what it sent went out.
	s.rateIO.packetsOut += ps
	s.rateIO.bytesOut += bs
	s.rateIO.packetsIn += pr
	s.rateIO.bytesIn += br
}

// delta is what a cumulative counter grew by; a counter that went down
// was reset, so all of it is new.
func delta(old, cur uint64) uint64 {
	if cur >= old {
		return cur - old
	}
	return cur
}

func cloneReasons(m map[string]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]uint64, min(len(m), maxErrReasons))
	for k, v := range m {
		if len(out) >= maxErrReasons {
			out["other"] += v
			continue
		}
		out[k] += v
	}
	return out
}

// addCapturer starts tracking id, retiring the instance heard from least
// recently when MaxCapturers are tracked.
func (s *State) addCapturer(id string, at time.Time) *capturer {
	limit := max(s.MaxCapturers, 1)
	for len(s.capturers) >= limit {
		var old *capturer
		for _, c := range s.capturers {
			if old == nil || (old.connected() && !c.connected()) ||
				(old.connected() == c.connected() && c.lastBatch.Before(old.lastBatch)) {
				old = c
			}
		}
		addCounters(&s.retired, &old.stats)
		s.nRetired++
		delete(s.capturers, old.id)
	}
	c := &capturer{id: id, firstSeen: at}
	s.capturers[id] = c
	return c
}

// addCounters adds the cumulative counters of src to dst (not the gauges:
// ActiveFlows, FragmentsPending).
func addCounters(dst, src *record.CaptureStats) {
	dst.Packets += src.Packets
	dst.Bytes += src.Bytes
	dst.KernelReceived += src.KernelReceived
	dst.KernelDrops += src.KernelDrops
	dst.FlowPackets += src.FlowPackets
	dst.NonIP += src.NonIP
	dst.Filtered += src.Filtered
	dst.Flows += src.Flows
	dst.Evictions += src.Evictions
	dst.SamplesSkipped += src.SamplesSkipped
	for k, v := range src.DecodeErrors {
		if dst.DecodeErrors == nil {
			dst.DecodeErrors = make(map[string]uint64)
		}
		if _, ok := dst.DecodeErrors[k]; !ok && len(dst.DecodeErrors) >= maxErrReasons {
			k = "other"
		}
		dst.DecodeErrors[k] += v
	}
}

// addPoint appends the running sums at time at to the rate window and
// drops points no query can need any more: all but the last one at or
// before at-RateWindow.
func (s *State) addPoint(at time.Time) {
	if n := len(s.points); n > 0 && !at.After(s.points[n-1].t) {
		// Same instant (or a batch of another capturer received a little
		// earlier): fold into the last point so times stay increasing.
		s.points[n-1].packets, s.points[n-1].bytes, s.points[n-1].io = s.rateP, s.rateB, s.rateIO
	} else {
		s.points = append(s.points, ratePoint{t: at, packets: s.rateP, bytes: s.rateB, io: s.rateIO})
	}
	cut := at.Add(-s.RateWindow)
	i := sort.Search(len(s.points), func(i int) bool { return s.points[i].t.After(cut) }) - 1
	drop := max(i, len(s.points)-maxRatePoints)
	if drop > 0 {
		s.points = slices.Delete(s.points, 0, drop)
	}
}

// rates returns the packets and bytes per second over the window ending
// at now: what the counters grew by since now-RateWindow, divided by the
// window. Before a whole window of points exists, the span since the first
// point is used instead. A burst followed by silence reads zero once the
// burst is more than a window old.
func (s *State) rates(now time.Time, st *Stats) {
	if len(s.points) == 0 {
		return
	}
	last := s.points[len(s.points)-1]
	cut := now.Add(-s.RateWindow)
	i := sort.Search(len(s.points), func(i int) bool { return s.points[i].t.After(cut) }) - 1
	base, span := s.points[0], now.Sub(s.points[0].t)
	if i >= 0 {
		base, span = s.points[i], s.RateWindow
	}
	if span <= 0 {
		return
	}
	sec := span.Seconds()
	st.PacketsPerSecond = float64(last.packets-base.packets) / sec
	st.BytesPerSecond = float64(last.bytes-base.bytes) / sec
	st.PacketsInPerSecond = float64(last.io.packetsIn-base.io.packetsIn) / sec
	st.PacketsOutPerSecond = float64(last.io.packetsOut-base.io.packetsOut) / sec
	st.BytesInPerSecond = float64(last.io.bytesIn-base.io.bytesIn) / sec
	st.BytesOutPerSecond = float64(last.io.bytesOut-base.io.bytesOut) / sec
}

// addSamples copies samples into the ring.
func (s *State) addSamples(samples []record.PacketSample) {
	size := s.HistorySize
	if size <= 0 {
		return
	}
	if s.samples == nil {
		s.samples = make([]record.PacketSample, size)
	}
	if len(samples) > size {
		samples = samples[len(samples)-size:]
	}
	for _, p := range samples {
		s.samples[(s.sHead+s.sLen)%size] = p
		if s.sLen < size {
			s.sLen++
		} else {
			s.sHead = (s.sHead + 1) % size
		}
	}
}

// SetCapturerConnected records that an IPC connection of the capturer
// instance opened (connected true) or closed. Calls are counted: the
// instance is connected while more of its connections opened than closed,
// since a reconnecting capturer's new connection may open before its old
// one is closed. Without calls for an instance, a batch from it counts as
// connected and health relies on SilentAfter alone.
func (s *State) SetCapturerConnected(instanceID string, connected bool) {
	s.mu.Lock()
	s.version++
	defer s.mu.Unlock()
	c := s.capturers[instanceID]
	if c == nil {
		if !connected {
			return
		}
		c = s.addCapturer(instanceID, s.Now())
	}
	c.tracked = true
	switch {
	case connected:
		c.conns++
	case c.conns > 0:
		c.conns--
	}
}

// SetCapturerFinished records that the capturer instance has read its
// source to the end (an import) and that its last batch is committed:
// once disconnected, it does not count as a lost capturer in the health
// check. Its statistics stay as they are. It cannot be undone: an instance
// that reconnects after it (to learn that its last batch was committed)
// stays finished.
func (s *State) SetCapturerFinished(instanceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	c := s.capturers[instanceID]
	if c == nil {
		c = s.addCapturer(instanceID, s.Now())
	}
	c.finished = true
}

// Version returns a number that changes whenever the state changes: two
// calls that return the same number saw the same state, so a response
// computed from it can be reused (/api/live caches its body by it).
func (s *State) Version() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// AppliedSeq returns the Seq of the latest batch applied for the capturer
// instance, 0 when none was (or the instance was retired). Ingest uses it
// to apply a batch to the live view once, whether before its commit (while
// the store refuses writes) or after.
func (s *State) AppliedSeq(instanceID string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := s.capturers[instanceID]; c != nil && c.batches > 0 {
		return c.seq
	}
	return 0
}

// SetStoreError records the outcome of the latest store write: a non-nil
// err makes health degraded with its text until a later call with nil.
func (s *State) SetStoreError(err error) {
	s.mu.Lock()
	s.version++
	defer s.mu.Unlock()
	if err == nil {
		s.storeErr = ""
		return
	}
	if s.storeErr == "" {
		s.storeSince = s.Now()
	}
	s.storeErr = err.Error()
	s.storeErrs++
}

// Stats are the headline numbers of /api/stats and the stream.
type Stats struct {
	// TotalPackets and TotalBytes are every frame the capturers read, from
	// their cumulative statistics (summed over instances, retired ones
	// included).
	TotalPackets uint64
	TotalBytes   uint64
	// ActiveFlows is the number of active flows: those in the flow tables
	// of the connected capturers (exact, from their statistics), or, with
	// no capturer connected, those the live view still holds.
	ActiveFlows int
	// PacketsPerSecond and BytesPerSecond are current rates over
	// RateWindow.
	PacketsPerSecond float64
	BytesPerSecond   float64
	// PacketsInPerSecond, PacketsOutPerSecond, BytesInPerSecond and
	// BytesOutPerSecond are the rates over RateWindow of the traffic the
	// watched namespace received (in) and sent (out), from what each flow
	// record grew by over the record of the same flow the view held: an
	// outbound flow's sent counters are out and received in, an inbound
	// flow's the reverse; internal and unknown-direction flows count in
	// neither (they do in PacketsPerSecond and BytesPerSecond). A flow the
	// view does not hold (beyond MaxFlows, or stale) counts only when it
	// is new, so with more active flows than MaxFlows these rates are low.
	PacketsInPerSecond  float64
	PacketsOutPerSecond float64
	BytesInPerSecond    float64
	BytesOutPerSecond   float64
	// Uptime is the time since Started.
	Uptime time.Duration
	// LastBatch is when the latest batch was received (zero: none yet).
	LastBatch time.Time
}

// Stats returns the headline numbers. It is cheap: no allocation.
func (s *State) Stats() Stats {
	now := s.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stats(now)
}

func (s *State) stats(now time.Time) Stats {
	st := Stats{
		TotalPackets: s.retired.Packets,
		TotalBytes:   s.retired.Bytes,
		ActiveFlows:  len(s.flows),
		Uptime:       max(now.Sub(s.Started), 0),
		LastBatch:    s.lastBatch,
	}
	connected := false
	active := 0
	for _, c := range s.capturers {
		st.TotalPackets += c.stats.Packets
		st.TotalBytes += c.stats.Bytes
		if c.connected() {
			connected = true
			active += int(c.stats.ActiveFlows)
		}
	}
	if connected {
		// The view holds at most its maximum; the capturers know them all.
		st.ActiveFlows = active
	}
	s.rates(now, &st)
	return st
}

// Capturer is what the state knows about one capturer instance.
type Capturer struct {
	InstanceID string
	Connected  bool
	FirstSeen  time.Time
	LastBatch  time.Time
	LastSeq    uint64
	Batches    uint64
	Stats      record.CaptureStats

	// Finished is set once the instance's source was read to the end and
	// its last batch committed (SetCapturerFinished).
	Finished bool
}

// TrafficKey is a protocol ("tcp", "udp"…, as in record.Flow.Proto) and a
// flow direction ("inbound", "outbound", "internal", or "unknown").
type TrafficKey struct {
	Proto     string
	Direction string
}

// TrafficCount is the traffic of one TrafficKey, both flow directions
// together: the sum of packets and bytes over the flow records committed
// to the store (store.TrafficCount says exactly how), whatever the live
// view holds.
type TrafficCount struct {
	TrafficKey
	Packets uint64
	Bytes   uint64
}

// Snapshot is everything the state knows, for /metrics and /api/health.
type Snapshot struct {
	Stats
	// Capture sums the latest statistics of every instance (counters of
	// retired instances included; gauges of tracked instances only).
	Capture record.CaptureStats
	// Capturers are the tracked instances, by instance id.
	Capturers []Capturer
	// RetiredCapturers counts instances no longer tracked.
	RetiredCapturers int
	// Traffic is the store's traffic totals as of the latest SetTraffic,
	// sorted by Proto, then Direction.
	Traffic []TrafficCount
	// Batches counts Apply calls.
	Batches uint64
	// IngestLag is the latest batch's time from ReceivedAt to Apply (its
	// store commit, mostly).
	IngestLag time.Duration
	// ViewFlows is the number of active flows the view holds (at most
	// MaxFlows; Stats.ActiveFlows counts them all).
	ViewFlows int
	// FlowEvictions counts active flows evicted because MaxFlows were
	// held; StaleFlows those removed after StaleAfter without an update;
	// EndedFlows the final records applied.
	FlowEvictions uint64
	StaleFlows    uint64
	EndedFlows    uint64
	// Samples is the number of packet samples in the ring.
	Samples int
	// StoreErrors counts SetStoreError calls with an error.
	StoreErrors uint64
	// Health is the health check at the time of the snapshot.
	Health Health
}

// Snapshot returns a copy of the state's numbers.
func (s *State) Snapshot() Snapshot {
	now := s.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := Snapshot{
		Stats:            s.stats(now),
		ViewFlows:        len(s.flows),
		Capture:          s.retired,
		RetiredCapturers: s.nRetired,
		Batches:          s.batches,
		IngestLag:        s.ingestLag,
		FlowEvictions:    s.evictions,
		StaleFlows:       s.stale,
		EndedFlows:       s.ended,
		Samples:          s.sLen,
		StoreErrors:      s.storeErrs,
		Health:           s.health(now),
	}
	snap.Capture.DecodeErrors = cloneReasons(s.retired.DecodeErrors)
	for _, c := range s.capturers {
		addCounters(&snap.Capture, &c.stats)
		snap.Capture.ActiveFlows += c.stats.ActiveFlows
		snap.Capture.FragmentsPending += c.stats.FragmentsPending
		cc := Capturer{
			InstanceID: c.id,
			Connected:  c.connected(),
			Finished:   c.finished,
			FirstSeen:  c.firstSeen,
			LastBatch:  c.lastBatch,
			LastSeq:    c.seq,
			Batches:    c.batches,
			Stats:      c.stats,
		}
		cc.Stats.DecodeErrors = cloneReasons(c.stats.DecodeErrors)
		snap.Capturers = append(snap.Capturers, cc)
	}
	slices.SortFunc(snap.Capturers, func(a, b Capturer) int { return cmp.Compare(a.InstanceID, b.InstanceID) })
	snap.Traffic = slices.Clone(s.traffic)
	return snap
}

// SetTraffic replaces the traffic totals with t, the store's totals at
// version. A version lower than the one held is older news (two batches'
// ingests may call in either order) and is ignored, so the totals never go
// back. t is copied; at most maxTrafficKeys pairs are kept.
func (s *State) SetTraffic(version uint64, t []TrafficCount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if version < s.trafficVersion {
		return
	}
	s.version++
	s.trafficVersion = version
	s.traffic = append(s.traffic[:0], t[:min(len(t), maxTrafficKeys)]...)
	slices.SortFunc(s.traffic, func(a, b TrafficCount) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Direction, b.Direction))
	})
}

// Health is the outcome of the health check.
type Health struct {
	// OK is true when Reasons is empty.
	OK bool
	// Reasons say why health is degraded, one sentence each.
	Reasons []string
	// CapturersSeen and CapturersConnected count tracked instances.
	CapturersSeen      int
	CapturersConnected int
	// LastBatch is when the latest batch arrived (zero: never).
	LastBatch time.Time
	// KernelDropsRecent are the packets the kernel dropped within
	// DropWindow.
	KernelDropsRecent uint64
	// StoreError is the latest store error, empty when the latest write
	// succeeded; StoreErrorSince is when the failures began.
	StoreError      string
	StoreErrorSince time.Time
}

// Health runs the health check: degraded when no capturer ever connected
// or none is connected now, when the connected ones have been silent for
// more than SilentAfter, when the kernel dropped packets within
// DropWindow, or when the latest store write failed. A finished instance
// (SetCapturerFinished: an import read to its end) is neither connected
// nor lost: with none connected, health is ok if every instance gone
// finished, and degraded ("no capturer connected") if any went away
// without finishing (killed, interrupted, or a live capture stopped).
func (s *State) Health() Health {
	now := s.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.health(now)
}

func (s *State) health(now time.Time) Health {
	h := Health{
		CapturersSeen:   len(s.capturers) + s.nRetired,
		LastBatch:       s.lastBatch,
		StoreError:      s.storeErr,
		StoreErrorSince: s.storeSince,
	}
	var last time.Time
	active, lost, finished := 0, 0, 0
	for _, c := range s.capturers {
		connected := c.connected()
		if connected {
			h.CapturersConnected++
		}
		switch {
		case c.finished:
			finished++ // sends nothing more: not silent, not lost
		case connected:
			active++
			if c.lastBatch.After(last) {
				last = c.lastBatch
			}
		default:
			lost++
		}
	}
	switch {
	case h.CapturersSeen == 0:
		h.Reasons = append(h.Reasons, "no capturer has connected yet")
	case active == 0 && (lost > 0 || finished == 0):
		h.Reasons = append(h.Reasons, "no capturer connected")
	case active == 0:
		// Every instance has finished its source: the imports are done.
	case last.IsZero():
		h.Reasons = append(h.Reasons, "capturer connected but has sent no batch yet")
	case now.Sub(last) > s.SilentAfter:
		h.Reasons = append(h.Reasons, fmt.Sprintf("capturer silent for %s (more than %s)",
			now.Sub(last).Truncate(time.Second), s.SilentAfter))
	}
	cut := now.Add(-s.DropWindow)
	for _, d := range s.drops {
		if d.t.After(cut) {
			h.KernelDropsRecent += d.n
		}
	}
	if h.KernelDropsRecent > 0 {
		h.Reasons = append(h.Reasons, fmt.Sprintf("kernel dropped %d packets in the last %s", h.KernelDropsRecent, s.DropWindow))
	}
	if s.storeErr != "" {
		h.Reasons = append(h.Reasons, "store failing: "+s.storeErr)
	}
	h.OK = len(h.Reasons) == 0
	return h
}

// RecentSamples returns up to n of the most recent packet samples, newest
// first, in a new slice.
func (s *State) RecentSamples(n int) []record.PacketSample {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n = min(n, s.sLen)
	if n <= 0 {
		return nil
	}
	out := make([]record.PacketSample, n)
	size := len(s.samples)
	for i := range n {
		out[i] = s.samples[(s.sHead+s.sLen-1-i)%size]
	}
	return out
}

// TopFlows returns up to n active flows with the most packets (both
// directions), most first; ties go to more bytes, then the smaller id. The
// slice is new; the records are copies.
func (s *State) TopFlows(n int) []record.Flow {
	if n <= 0 {
		return nil
	}
	s.mu.RLock()
	h := make(flowHeap, 0, min(n, len(s.flows)))
	for e := s.lru.head; e != nil; e = e.next {
		f := &e.f
		if len(h) < n {
			heap.Push(&h, f)
		} else if less(h[0], f) {
			h[0] = f
			heap.Fix(&h, 0)
		}
	}
	out := make([]record.Flow, len(h))
	for i := len(h) - 1; i >= 0; i-- {
		out[i] = *heap.Pop(&h).(*record.Flow)
	}
	s.mu.RUnlock()
	return out
}

// less orders flows for TopFlows: a < b when a ranks lower.
func less(a, b *record.Flow) bool {
	pa, pb := a.PacketsSent+a.PacketsReceived, b.PacketsSent+b.PacketsReceived
	if pa != pb {
		return pa < pb
	}
	ba, bb := a.BytesSent+a.BytesReceived, b.BytesSent+b.BytesReceived
	if ba != bb {
		return ba < bb
	}
	return a.ID > b.ID
}

// flowHeap is a min-heap of the best flows so far: the root ranks lowest.
type flowHeap []*record.Flow

func (h flowHeap) Len() int           { return len(h) }
func (h flowHeap) Less(i, j int) bool { return less(h[i], h[j]) }
func (h flowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *flowHeap) Push(x any)        { *h = append(*h, x.(*record.Flow)) }
func (h *flowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Flow returns the active flow with the given id.
func (s *State) Flow(id string) (record.Flow, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.flows[id]; e != nil {
		return e.f, true
	}
	return record.Flow{}, false
}
