// Package flow owns the bounded, bidirectional flow table: the canonical
// 5-tuple key, the originator rule, per-direction counters, Zeek's TCP
// history and conn_state, idle and FIN/RST expiry driven by packet time,
// early export of the longest-idle flow when the table is full, and tying
// IP fragments to the flow of their first fragment.
//
// A Table is owned by one goroutine and has no locks. It reads no clock:
// time is the packets' capture time. It imports decode, record and
// communityid only.
package flow

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/decode"
)

// Default settings.
const (
	DefaultMaxFlows      = 16384
	DefaultIdleTimeout   = 60 * time.Second
	DefaultClosedTimeout = 5 * time.Second
	DefaultFragTimeout   = 30 * time.Second
	DefaultMaxFragments  = 1024
)

// Stats are a table's cumulative counters.
type Stats struct {
	Packets   uint64 // packets charged to flows
	Flows     uint64 // flows created
	Active    int    // flows in the table now
	Evictions uint64 // flows exported early because the table was full
	// FragmentsPending are later fragments held until their first fragment
	// arrives; FragmentsOrphaned those whose first fragment never came
	// (charged to a flow without ports); FragmentsOverflow those that
	// found the fragment table full (charged the same way at once).
	FragmentsPending  int
	FragmentsOrphaned uint64
	FragmentsOverflow uint64
}

// Table is the flow table. Create it with NewTable, set the optional fields,
// then feed it packets with Update. Not safe for concurrent use.
type Table struct {
	// IdleTimeout ends a flow that saw no packet for this long (packet
	// time); ClosedTimeout does the same, sooner, once a TCP flow has seen
	// a FIN or RST.
	IdleTimeout   time.Duration
	ClosedTimeout time.Duration
	// FragTimeout is how long a fragment entry waits for the rest of its
	// datagram; MaxFragments bounds the fragment table.
	FragTimeout  time.Duration
	MaxFragments int
	// Local, if set, reports whether an address belongs to the watched
	// namespace; flows then carry a direction.
	Local func(netip.Addr) bool
	// OnEnd receives every flow that ends (idle, closed, evicted, reused,
	// or flushed). The *Flow is valid only during the call.
	OnEnd func(*Flow)

	max     int
	entries []entry // len max; entries[used:] were never used
	used    uint32
	free    uint32 // head of the free list, index+1
	// index is an open-addressing hash table: each slot holds an entry's
	// index+1 in its low 24 bits and 8 bits of the key's hash above them,
	// so most mismatched probes never touch the entry.
	index []uint32
	mask  uint64
	seed  uint64
	// last is the entry the previous packet was charged to, plus one:
	// packets come in bursts of one flow, and a burst's next packet is
	// then found without hashing or probing. find checks that the entry
	// is in use and holds the key, so nothing needs to reset it.
	last    uint32
	lists   [2]list // active, closing
	now     int64
	sweepAt int64
	frags   map[decode.FragKey]fragEntry
	stats   Stats
	snap    Flow
}

const (
	listActive  = 0
	listClosing = 1
)

type list struct{ head, tail uint32 } // index+1; 0 = none

type entry struct {
	k           key
	first, last int64
	pkts, bytes [2]uint64 // [0]: originator to responder
	synSeq      [2]uint32
	prev, next  uint32 // list links, index+1
	born        uint32 // low 32 bits of the creation time in ns, for the id
	seen        uint16
	vlan        uint16 // the first packet's VLAN ID plus one; 0: untagged
	tcpState    [2]uint8
	prevState   [2]uint8
	tcpFlags    uint8
	histLen     uint8
	hist        [12]byte
	// epoch is when the entry was last moved to its list's tail, in units
	// of 2^28 ns (about a quarter of a second), modulo 2^16.
	epoch   uint16
	origIsA bool
	inUse   bool
	dirty   bool
	list    uint8
}

type fragEntry struct {
	expire int64
	// Set once the first fragment was seen: the flow key and whether the
	// datagram travels from A to B.
	k       key
	aToB    bool
	hasFlow bool
	// Counts of later fragments that came before the first fragment.
	pkts, bytes uint64
	first, last int64
	src, dst    netip.Addr
	proto       uint8
	vlan        uint16
	hasVLAN     bool
}

// MaxFlows is the largest table NewTable makes.
const MaxFlows = 1<<24 - 1

// NewTable returns a table that holds at most maxFlows flows (0 means
// DefaultMaxFlows, more than MaxFlows means MaxFlows). Its memory is
// allocated at once, about 150 bytes a flow; pages the table never uses
// are never touched, so they take no resident memory.
func NewTable(maxFlows int) *Table {
	if maxFlows <= 0 {
		maxFlows = DefaultMaxFlows
	}
	maxFlows = min(maxFlows, MaxFlows)
	t := &Table{
		IdleTimeout:   DefaultIdleTimeout,
		ClosedTimeout: DefaultClosedTimeout,
		FragTimeout:   DefaultFragTimeout,
		MaxFragments:  DefaultMaxFragments,
		max:           maxFlows,
		seed:          rand.Uint64(),
	}
	t.entries = make([]entry, maxFlows)
	size := 1
	for size < 2*maxFlows {
		size <<= 1
	}
	t.index = make([]uint32, size)
	t.mask = uint64(size - 1)
	return t
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	s := t.stats
	for _, f := range t.frags {
		if !f.hasFlow {
			s.FragmentsPending += int(f.pkts)
		}
	}
	return s
}

// Len returns the number of flows in the table.
func (t *Table) Len() int { return t.stats.Active }

// Handle names a flow in the table until it ends (0: none).
type Handle uint32

// Update charges one decoded packet (p, with its capture time ts in Unix
// nanoseconds) to its flow, creating the flow if needed, and returns the
// flow's handle (0 for a fragment waiting for its first fragment). It ends
// flows whose idle timeout has passed in packet time.
func (t *Table) Update(p *decode.Packet, ts int64) Handle {
	t.advance(ts)
	if p.Frag == decode.LaterFragment {
		return t.laterFragment(p, ts)
	}
	var s Summary
	s.set(p, ts)
	i, aToB := t.packet(&s)
	if p.Frag == decode.FirstFragment {
		t.firstFragment(p, &t.entries[i], aToB)
	}
	return Handle(i + 1)
}

// ID returns the stable id of the flow h names, as the flow's records
// carry it.
func (t *Table) ID(h Handle) uint64 {
	if h == 0 {
		return 0
	}
	e := &t.entries[h-1]
	return flowID(&e.k, e.born)
}

// Advance moves the table's clock to ts (Unix nanoseconds) if it is later,
// ending flows whose timeout has passed. A live capture calls it while no
// packet arrives, so that idle flows still end.
func (t *Table) Advance(ts int64) { t.advance(ts) }

func (t *Table) advance(ts int64) {
	if ts > t.now {
		t.now = ts
	}
	if t.now >= t.sweepAt {
		t.sweep()
	}
}

// packet charges the packet s summarizes to its flow and returns the
// entry's index and the packet's direction in key terms.
func (t *Table) packet(s *Summary) (uint32, bool) {
	k := &s.k
	aToB := s.bits&sumAToB != 0
	tcp := k.proto == decode.ProtoTCP
	i, ok := t.find(k)
	if ok && tcp && s.flags&(decode.TCPSyn|decode.TCPAck) == decode.TCPSyn {
		// A new SYN on a connection that has been closed or reset is a
		// new connection on a reused 4-tuple, unless it repeats the
		// initial SYN's sequence number: then it is a retransmission
		// (Zeek's IsReuse; tshark's tcp.stream does the same).
		if e := &t.entries[i]; e.closing() {
			dir := 0
			if aToB != e.origIsA {
				dir = 1
			}
			if e.seen>>(8*dir)&seenS == 0 || e.synSeq[dir] != s.seq {
				t.end(i, endReused)
				ok = false
			}
		}
	}
	if !ok {
		i = t.insert(k, s.ts)
		e := &t.entries[i]
		e.origIsA = aToB
		if s.bits&sumVLAN != 0 {
			e.vlan = s.vlan + 1
		}
		if tcp && s.flags&(decode.TCPSyn|decode.TCPAck) == decode.TCPSyn|decode.TCPAck {
			// The first packet is a SYN-ACK: its receiver is the
			// originator. Zeek marks such a flip with '^'.
			e.origIsA = !aToB
			e.hist[0] = '^'
			e.histLen = 1
		}
	}
	e := &t.entries[i]
	dir := 0
	if aToB != e.origIsA {
		dir = 1
	}
	t.charge(i, dir, s.length, s.ts)
	if tcp && s.bits&sumPorts != 0 {
		e.tcpUpdate(dir, s)
		if e.list == listActive && e.closing() {
			t.unlink(i)
			t.pushBack(listClosing, i)
		}
	} else if k.proto == decode.ProtoUDP {
		e.once(dir, seenD, 'D')
	}
	t.last = i + 1
	return i, aToB
}

// charge adds one packet of the given wire length to entry i in direction
// dir and makes it the most recently used.
func (t *Table) charge(i uint32, dir int, length uint32, ts int64) {
	e := &t.entries[i]
	e.pkts[dir]++
	e.bytes[dir] += uint64(length)
	if ts > e.last {
		e.last = ts
	}
	if ts < e.first {
		e.first = ts
	}
	e.dirty = true
	t.stats.Packets++
	// Keep the list in order of activity, but spare the cache misses of
	// relinking (the entry's neighbours and the tail) on every packet:
	// relink at most once per epoch of about a quarter of a second. A
	// flow's place is then at most one epoch stale, which the idle timeouts
	// and the choice of the longest-idle flow can afford.
	if ep := epochOf(ts); e.epoch != ep {
		e.epoch = ep
		if e.next != 0 {
			l := int(e.list)
			t.unlink(i)
			t.pushBack(l, i)
		}
	}
}

func (t *Table) firstFragment(p *decode.Packet, e *entry, aToB bool) {
	fk := p.FragKey
	f, ok := t.frags[fk]
	if !ok && len(t.frags) >= t.maxFragments() {
		return // later fragments will be charged without ports
	}
	f.k, f.aToB, f.hasFlow = e.k, aToB, true
	f.expire = t.now + int64(t.FragTimeout)
	if f.pkts > 0 {
		// Fragments that came before this one belong to the same
		// datagram, so to the same flow and direction.
		dir := 0
		if aToB != e.origIsA {
			dir = 1
		}
		e.pkts[dir] += f.pkts
		e.bytes[dir] += f.bytes
		t.stats.Packets += f.pkts
		if f.first < e.first {
			e.first = f.first
		}
		if f.last > e.last {
			e.last = f.last
		}
		f.pkts, f.bytes = 0, 0
	}
	t.fragMap()[fk] = f
}

func (t *Table) laterFragment(p *decode.Packet, ts int64) Handle {
	fk := p.FragKey
	f, ok := t.frags[fk]
	if ok && f.hasFlow {
		i, found := t.lookup(&f.k)
		if !found {
			// The flow ended between fragments: start it again.
			i = t.insert(&f.k, ts)
			t.entries[i].origIsA = f.aToB
		}
		e := &t.entries[i]
		dir := 0
		if f.aToB != e.origIsA {
			dir = 1
		}
		t.charge(i, dir, p.Length, ts)
		return Handle(i + 1)
	}
	if !ok && len(t.frags) >= t.maxFragments() {
		// No room to wait for the first fragment: charge it now to the
		// flow of its IP header, without ports.
		t.stats.FragmentsOverflow++
		return t.orphan(p.Src, p.Dst, p.Proto, p.VLAN, p.HasVLAN, 1, uint64(p.Length), ts, ts)
	}
	if !ok {
		f = fragEntry{first: ts, src: p.Src, dst: p.Dst, proto: p.Proto, vlan: p.VLAN, hasVLAN: p.HasVLAN,
			expire: t.now + int64(t.FragTimeout)}
	}
	f.pkts++
	f.bytes += uint64(p.Length)
	if ts > f.last {
		f.last = ts
	}
	if ts < f.first {
		f.first = ts
	}
	t.fragMap()[fk] = f
	return 0
}

// orphan charges packets that cannot be tied to a transport flow to the
// flow of their addresses and protocol, with ports zero.
func (t *Table) orphan(src, dst netip.Addr, proto uint8, vlan uint16, hasVLAN bool, pkts, bytes uint64, first, last int64) Handle {
	p := decode.Packet{Src: src, Dst: dst, Proto: proto, VLAN: vlan, HasVLAN: hasVLAN}
	var k key
	aToB := makeKey(&k, &p, 0, 0)
	i, ok := t.lookup(&k)
	if !ok {
		i = t.insert(&k, first)
		t.entries[i].origIsA = aToB
		if hasVLAN {
			t.entries[i].vlan = vlan + 1
		}
	}
	e := &t.entries[i]
	dir := 0
	if aToB != e.origIsA {
		dir = 1
	}
	t.charge(i, dir, 0, last)
	e.pkts[dir] += pkts - 1
	t.stats.Packets += pkts - 1
	e.bytes[dir] += bytes
	if first < e.first {
		e.first = first
	}
	return Handle(i + 1)
}

func (t *Table) maxFragments() int {
	if t.MaxFragments <= 0 {
		return DefaultMaxFragments
	}
	return t.MaxFragments
}

func (t *Table) fragMap() map[decode.FragKey]fragEntry {
	if t.frags == nil {
		t.frags = make(map[decode.FragKey]fragEntry, t.maxFragments())
	}
	return t.frags
}

// sweep ends flows idle past their timeout and resolves stale fragments.
// It runs once per second of packet time.
func (t *Table) sweep() {
	t.sweepAt = t.now + int64(time.Second)
	t.expireList(listClosing, int64(t.ClosedTimeout), endClosed)
	t.expireList(listActive, int64(t.IdleTimeout), endIdle)
	for fk, f := range t.frags {
		if f.expire > t.now {
			continue
		}
		delete(t.frags, fk)
		if !f.hasFlow && f.pkts > 0 {
			t.stats.FragmentsOrphaned += f.pkts
			t.orphan(f.src, f.dst, f.proto, f.vlan, f.hasVLAN, f.pkts, f.bytes, f.first, f.last)
		}
	}
}

func (t *Table) expireList(l int, timeout int64, reason endReason) {
	for h := t.lists[l].head; h != 0; h = t.lists[l].head {
		e := &t.entries[h-1]
		if t.now-e.last <= timeout {
			return
		}
		t.end(h-1, reason)
	}
}

// Flush ends every flow, as at the end of a capture file or at shutdown:
// fragments still waiting for their first fragment are charged to flows
// without ports first.
func (t *Table) Flush() {
	for fk, f := range t.frags {
		delete(t.frags, fk)
		if !f.hasFlow && f.pkts > 0 {
			t.stats.FragmentsOrphaned += f.pkts
			t.orphan(f.src, f.dst, f.proto, f.vlan, f.hasVLAN, f.pkts, f.bytes, f.first, f.last)
		}
	}
	for _, l := range []int{listClosing, listActive} {
		for h := t.lists[l].head; h != 0; h = t.lists[l].head {
			t.end(h-1, endEOF)
		}
	}
}

// Updated calls fn for every flow that changed since the last call (or
// since it was created), oldest activity first, and marks them clean. The
// *Flow is valid only during the call.
func (t *Table) Updated(fn func(*Flow)) {
	for _, l := range []int{listClosing, listActive} {
		for h := t.lists[l].head; h != 0; {
			e := &t.entries[h-1]
			next := e.next
			if e.dirty {
				e.dirty = false
				t.fill(&t.snap, e, endNone)
				fn(&t.snap)
			}
			h = next
		}
	}
}

// end exports entry i with the given reason and frees it.
func (t *Table) end(i uint32, reason endReason) {
	e := &t.entries[i]
	if reason == endEvicted {
		t.stats.Evictions++
	}
	if t.OnEnd != nil {
		t.fill(&t.snap, e, reason)
		t.OnEnd(&t.snap)
	}
	t.remove(i)
}

// insert adds a new flow for k, evicting the longest-idle flow if the
// table is full, and returns its index.
func (t *Table) insert(k *key, ts int64) uint32 {
	if t.stats.Active >= t.max {
		// Export the longest-idle flow: the older of the two lists'
		// heads (each list is in order of activity).
		h := t.lists[listActive].head
		if c := t.lists[listClosing].head; c != 0 && (h == 0 || t.entries[c-1].last <= t.entries[h-1].last) {
			h = c
		}
		t.end(h-1, endEvicted)
	}
	var i uint32
	if t.free != 0 {
		i = t.free - 1
		t.free = t.entries[i].next
	} else {
		i = t.used
		t.used++
	}
	e := &t.entries[i]
	*e = entry{k: *k, first: ts, last: ts, born: uint32(ts), epoch: epochOf(ts), inUse: true, dirty: true}
	t.stats.Active++
	t.stats.Flows++
	t.pushBack(listActive, i)
	t.indexInsert(i)
	return i
}

func (t *Table) remove(i uint32) {
	t.indexDelete(i)
	t.unlink(i)
	e := &t.entries[i]
	e.inUse = false
	e.next = t.free
	t.free = i + 1
	t.stats.Active--
}

const (
	slotIndex = 1<<24 - 1
	slotTag   = ^uint32(slotIndex)
)

// tag is the part of a hash kept in index slots: bits the slot's position
// does not already use.
func tag(h uint64) uint32 { return uint32(h>>32) & slotTag }

// find is lookup, trying the previous packet's flow first.
func (t *Table) find(k *key) (uint32, bool) {
	if l := t.last; l != 0 {
		if e := &t.entries[l-1]; e.inUse && e.k.eq(k) {
			return l - 1, true
		}
	}
	return t.lookup(k)
}

func (t *Table) lookup(k *key) (uint32, bool) {
	h := k.hash(t.seed)
	tg := tag(h)
	for s := h & t.mask; ; s = (s + 1) & t.mask {
		v := t.index[s]
		if v == 0 {
			return 0, false
		}
		if v&slotTag == tg {
			if i := v&slotIndex - 1; t.entries[i].k.eq(k) {
				return i, true
			}
		}
	}
}

func (t *Table) indexInsert(i uint32) {
	h := t.entries[i].k.hash(t.seed)
	s := h & t.mask
	for t.index[s] != 0 {
		s = (s + 1) & t.mask
	}
	t.index[s] = (i + 1) | tag(h)
}

// indexDelete removes entry i from the index with backward-shift deletion,
// so lookups never need tombstones.
func (t *Table) indexDelete(i uint32) {
	s := t.entries[i].k.hash(t.seed) & t.mask
	for t.index[s]&slotIndex != i+1 {
		s = (s + 1) & t.mask
	}
	for {
		t.index[s] = 0
		j := s
		for {
			j = (j + 1) & t.mask
			v := t.index[j]
			if v == 0 {
				return
			}
			home := t.entries[v&slotIndex-1].k.hash(t.seed) & t.mask
			// Move v into the hole at s unless its home lies cyclically
			// in (s, j].
			if (j > s && (home <= s || home > j)) || (j < s && home <= s && home > j) {
				t.index[s] = v
				s = j
				break
			}
		}
	}
}

func (t *Table) pushBack(l int, i uint32) {
	e := &t.entries[i]
	e.list = uint8(l)
	e.next = 0
	e.prev = t.lists[l].tail
	if t.lists[l].tail != 0 {
		t.entries[t.lists[l].tail-1].next = i + 1
	} else {
		t.lists[l].head = i + 1
	}
	t.lists[l].tail = i + 1
}

func (t *Table) unlink(i uint32) {
	e := &t.entries[i]
	l := e.list
	if e.prev != 0 {
		t.entries[e.prev-1].next = e.next
	} else {
		t.lists[l].head = e.next
	}
	if e.next != 0 {
		t.entries[e.next-1].prev = e.prev
	} else {
		t.lists[l].tail = e.prev
	}
	e.prev, e.next = 0, 0
}

// flowID is the flow's stable id: a hash of its key and the time it was
// created (its first packet's, in nanoseconds, low 32 bits), so a reused
// 4-tuple gets a new id and the same capture always gives the same ids.
func flowID(k *key, born uint32) uint64 {
	h := k.hash(0x6c69676874736861) // "lightsha"
	h ^= uint64(born)
	h *= 0x9e3779b97f4a7c15
	h ^= h >> 31
	return h
}

// epochOf is the relinking epoch of a packet time: 2^28 ns, about 268 ms.
func epochOf(ts int64) uint16 { return uint16(ts >> 28) }
