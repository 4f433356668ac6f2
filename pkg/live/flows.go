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

// upsert stores an updated active flow.
func (s *State) upsert(f *record.Flow, at time.Time) {
	if f.ID == "" {
		return
	}
	e := s.flows[f.ID]
	if e == nil {
		if limit := max(s.MaxFlows, 1); len(s.flows) >= limit {
			// Evict the least recently updated flow and reuse its
			// entry: at ingest rates a new entry per record is most
			// of the live view's garbage.
			e = s.lru.head
			s.lru.remove(e)
			delete(s.flows, e.f.ID)
			s.evictions++
		} else {
			e = &flowEntry{}
		}
		s.flows[f.ID] = e
	} else {
		s.lru.remove(e)
	}
	e.f = *f
	e.updated = at
	s.lru.pushBack(e)
}

// end removes an active flow on its final record.
func (s *State) end(f *record.Flow) {
	s.ended++
	if e := s.flows[f.ID]; e != nil {
		s.lru.remove(e)
		delete(s.flows, f.ID)
	}
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
