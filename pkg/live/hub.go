package live

import (
	"errors"
	"sync"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Hub defaults.
const (
	DefaultMaxSubscribers = 256
	DefaultBuffer         = 256
	// MaxBuffer bounds a subscription's buffer whatever Subscribe is asked.
	MaxBuffer = 8192
)

// ErrTooManySubscribers is returned by Subscribe when MaxSubscribers
// subscriptions are open.
var ErrTooManySubscribers = errors.New("too many subscribers")

// Hub fans flow updates out to subscribers (the WebSocket clients of
// /api/stream). Publish never blocks: each subscription has a bounded
// buffer, and when it is full the oldest queued update is dropped and
// counted, so a slow subscriber loses updates instead of slowing ingest or
// the other subscribers. Hub is safe for concurrent use.
type Hub struct {
	// MaxSubscribers bounds the open subscriptions (default
	// DefaultMaxSubscribers). Set it before the first Subscribe.
	MaxSubscribers int

	mu   sync.RWMutex
	subs map[*Subscription]struct{}

	// Counts of closed subscriptions, guarded by mu; open ones are added
	// at read time.
	closedSent, closedDropped uint64
}

// NewHub returns a hub with the default limits.
func NewHub() *Hub {
	return &Hub{MaxSubscribers: DefaultMaxSubscribers, subs: make(map[*Subscription]struct{})}
}

// Subscription receives the flow updates its match function accepts.
// Ready is signalled when updates are queued; Take collects them. A
// subscription with a nil match receives nothing but still counts against
// MaxSubscribers (a stats-only stream client).
type Subscription struct {
	hub   *Hub
	match func(*record.Flow) bool
	ready chan struct{}

	mu      sync.Mutex
	buf     []record.Flow // ring of len(buf) entries, grown up to max
	max     int
	head, n int
	lost    uint64 // dropped since the last Take
	sent    uint64 // handed out by Take, cumulative
	dropped uint64 // cumulative
	closed  bool
}

// Subscribe opens a subscription for the flow updates match accepts
// (match is called from Publish, on the ingest goroutine: it must be quick
// and must not block). buffer bounds the updates queued between two Takes
// (0: DefaultBuffer; at most MaxBuffer). It returns ErrTooManySubscribers
// when MaxSubscribers are open. Close the subscription when done.
func (h *Hub) Subscribe(match func(*record.Flow) bool, buffer int) (*Subscription, error) {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	buffer = min(buffer, MaxBuffer)
	// The ring starts small and grows (to buffer) only for a client that
	// falls behind: one that keeps up costs a few records, not buffer.
	s := &Subscription{hub: h, match: match, ready: make(chan struct{}, 1), max: buffer}
	h.mu.Lock()
	defer h.mu.Unlock()
	limit := h.MaxSubscribers
	if limit <= 0 {
		limit = DefaultMaxSubscribers
	}
	if len(h.subs) >= limit {
		return nil, ErrTooManySubscribers
	}
	h.subs[s] = struct{}{}
	return s, nil
}

// grow doubles the ring (from 8, up to max), keeping the queued order.
func (s *Subscription) grow() {
	n := min(max(2*len(s.buf), 8), s.max)
	buf := make([]record.Flow, n)
	for i := range s.n {
		buf[i] = s.buf[(s.head+i)%len(s.buf)]
	}
	s.buf, s.head = buf, 0
}

// Publish queues each flow for every subscription whose match accepts it.
// It never blocks on a subscriber. flows is not retained (records are
// copied; their strings are shared, which is safe because strings are
// immutable).
func (h *Hub) Publish(flows []record.Flow) {
	if len(flows) == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs {
		if s.match != nil {
			s.push(flows)
		}
	}
}

func (s *Subscription) push(flows []record.Flow) {
	queued := false
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for i := range flows {
		f := &flows[i]
		if !s.match(f) {
			continue
		}
		if s.n == len(s.buf) && len(s.buf) < s.max {
			s.grow()
		}
		size := len(s.buf)
		if s.n == size {
			// Full: drop the oldest. The newest record of a flow carries
			// its cumulative counters, so it is the one worth keeping.
			s.head = (s.head + 1) % size
			s.n--
			s.lost++
			s.dropped++
		}
		s.buf[(s.head+s.n)%size] = *f
		s.n++
		queued = true
	}
	s.mu.Unlock()
	if queued {
		select {
		case s.ready <- struct{}{}:
		default: // already signalled
		}
	}
}

// Ready is signalled (it has a buffer of one) after updates are queued.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take appends the queued updates to dst, oldest first, and returns it
// with the number of updates dropped since the previous Take (they were
// older than every update returned). The records are copies the caller
// owns.
func (s *Subscription) Take(dst []record.Flow) ([]record.Flow, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := len(s.buf)
	for i := 0; i < s.n; i++ {
		j := (s.head + i) % size
		dst = append(dst, s.buf[j])
		s.buf[j] = record.Flow{} // release the strings
	}
	s.sent += uint64(s.n)
	s.head, s.n = 0, 0
	if len(s.buf) > 64 {
		s.buf = nil // a burst is over: give its ring back
	}
	lost := s.lost
	s.lost = 0
	return dst, lost
}

// SubscriptionStats are the cumulative counts of one subscription.
type SubscriptionStats struct {
	Sent    uint64 // updates handed out by Take
	Dropped uint64 // updates dropped because the buffer was full
	Queued  int    // updates waiting for Take
}

// Stats returns the subscription's counts.
func (s *Subscription) Stats() SubscriptionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SubscriptionStats{Sent: s.sent, Dropped: s.dropped, Queued: s.n}
}

// Close removes the subscription from the hub; its counts stay in the
// hub's totals. Close is idempotent.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, open := h.subs[s]; !open {
		return
	}
	delete(h.subs, s)
	s.mu.Lock()
	s.closed = true
	s.buf, s.n = nil, 0
	// Moved to the totals under h.mu, so that Stats never counts a
	// subscription twice or not at all.
	h.closedSent += s.sent
	h.closedDropped += s.dropped
	s.mu.Unlock()
}

// HubStats are the hub's counts: open subscriptions, and updates sent and
// dropped by every subscription since the hub was made.
type HubStats struct {
	Subscribers int
	Sent        uint64
	Dropped     uint64
}

// Stats returns the hub's counts.
func (h *Hub) Stats() HubStats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st := HubStats{Subscribers: len(h.subs), Sent: h.closedSent, Dropped: h.closedDropped}
	for s := range h.subs {
		ss := s.Stats()
		st.Sent += ss.Sent
		st.Dropped += ss.Dropped
	}
	return st
}
