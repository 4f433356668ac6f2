package live

import (
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// flowEntry is one active flow, linked into the state's list in order of
// last update.
type flowEntry struct {
	f          record.Flow
	updated    time.Time
	prev, next *flowEntry
}

// flowList is a doubly linked list of entries, least recently updated at
// head. (container/list would box every entry in an interface.)
type flowList struct {
	head, tail *flowEntry
}

func (l *flowList) pushBack(e *flowEntry) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
}

func (l *flowList) remove(e *flowEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// upsert stores an updated active flow and counts its new traffic.
func (s *State) upsert(f *record.Flow, at time.Time) {
	if f.ID == "" {
		return
	}
	e := s.flows[f.ID]
	if e == nil {
		if limit := max(s.MaxFlows, 1); len(s.flows) >= limit {
			old := s.lru.head
			s.lru.remove(old)
			delete(s.flows, old.f.ID)
			s.evictions++
		}
		e = &flowEntry{}
		s.flows[f.ID] = e
	} else {
		s.lru.remove(e)
	}
	s.count(&e.f, f)
	e.f = *f
	e.updated = at
	s.lru.pushBack(e)
}

// end removes an active flow on its final record and counts its new
// traffic.
func (s *State) end(f *record.Flow) {
	s.ended++
	e := s.flows[f.ID]
	if e == nil {
		// Began and ended within one interval, or evicted from the view.
		s.count(&record.Flow{}, f)
		return
	}
	s.count(&e.f, f)
	s.lru.remove(e)
	delete(s.flows, f.ID)
}

// pruneStale removes flows without an update since at-StaleAfter.
func (s *State) pruneStale(at time.Time) {
	if s.StaleAfter <= 0 {
		return
	}
	cut := at.Add(-s.StaleAfter)
	for e := s.lru.head; e != nil && e.updated.Before(cut); e = s.lru.head {
		s.lru.remove(e)
		delete(s.flows, e.f.ID)
		s.stale++
	}
}

// count adds what the flow's cumulative counters grew by since prev (the
// zero Flow for a flow not seen before) to its protocol and direction.
func (s *State) count(prev, cur *record.Flow) {
	p := delta(prev.PacketsSent, cur.PacketsSent) + delta(prev.PacketsReceived, cur.PacketsReceived)
	b := delta(prev.BytesSent, cur.BytesSent) + delta(prev.BytesReceived, cur.BytesReceived)
	if p == 0 && b == 0 {
		return
	}
	k := TrafficKey{Proto: cur.Proto, Direction: cur.Direction}
	switch k.Direction {
	case record.DirInbound, record.DirOutbound, record.DirInternal:
	default:
		k.Direction = "unknown"
	}
	if k.Proto == "" {
		k.Proto = record.ProtoName(cur.ProtoNum)
	}
	t := s.traffic[k]
	if t == nil {
		if len(s.traffic) >= maxTrafficKeys {
			// A capturer naming protocols beyond reason: keep the label
			// set bounded.
			k = TrafficKey{Proto: "other", Direction: k.Direction}
			t = s.traffic[k]
		}
		if t == nil {
			t = &TrafficCount{TrafficKey: k}
			s.traffic[k] = t
		}
	}
	t.Packets += p
	t.Bytes += b
}
