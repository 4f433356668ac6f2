package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// TrafficCount is the traffic of one protocol and flow direction: the sum
// of packets and bytes (both flow directions together) over every flow
// record committed, each record counting what its cumulative counters grew
// by over the stored row it replaced. So it equals the sum over the flows
// stored, plus what retention has deleted; it never goes down, and a batch
// applied twice (a resend) counts once. A record whose counters are lower
// than the stored row's (a flow id reused by another capture, as when a
// file is imported twice) counts whole, as a counter reset does.
type TrafficCount struct {
	// Proto is record.ProtoName of the flows' protocol number: "tcp",
	// "udp", "icmp", "icmpv6", "sctp" or the number (at most 256 values).
	Proto string
	// Direction is "inbound", "outbound", "internal" or "unknown".
	Direction string
	Packets   uint64
	Bytes     uint64
}

// Traffic returns the traffic totals, sorted by Proto then Direction, with
// a version that grows whenever they change: of two reads, the one with
// the greater version is the later state (also across a reopen of the
// file, unless the clock went back). It reads no file: the totals are
// kept in memory, loaded at Open and advanced when a batch commits. The
// slice is new.
func (db *DB) Traffic() (counts []TrafficCount, version uint64) {
	return db.traffic.read()
}

// Traffic labels: the protocol number times 4 plus the direction's code.
const numLabels = 256 * 4

var directionNames = [4]string{"unknown", record.DirInbound, record.DirOutbound, record.DirInternal}

// directionCode returns the index of d in directionNames (0, unknown, for
// anything else).
func directionCode(d string) int {
	switch d {
	case record.DirInbound:
		return 1
	case record.DirOutbound:
		return 2
	case record.DirInternal:
		return 3
	}
	return 0
}

func trafficLabel(proto uint8, dir int) int { return int(proto)*4 + dir&3 }

// counters are a label's packets and bytes, saturating at 2^63-1.
type counters struct{ p, b int64 }

// trafficDelta is what one batch adds, per label.
type trafficDelta struct {
	d       [numLabels]counters
	touched []int
}

func (t *trafficDelta) reset() {
	for _, l := range t.touched {
		t.d[l] = counters{}
	}
	t.touched = t.touched[:0]
}

// add counts a record of label whose totals go from old to cur. Counters
// that went down belong to another flow with the same id: all of cur is
// new.
func (t *trafficDelta) add(label int, oldP, oldB, curP, curB int64) {
	dp, db := curP-oldP, curB-oldB
	if curP < oldP || curB < oldB {
		dp, db = curP, curB
	}
	if dp == 0 && db == 0 {
		return
	}
	c := &t.d[label]
	if *c == (counters{}) {
		t.touched = append(t.touched, label)
	}
	c.p, c.b = sat(c.p, dp), sat(c.b, db)
}

// trafficTotals are the committed totals, mirrored in memory. Batches
// change them one at a time (the writer's turn), readers take mu.
type trafficTotals struct {
	mu      sync.Mutex
	version uint64
	t       [numLabels]counters
}

// load reads the totals from the traffic table.
func (tt *trafficTotals) load(ctx context.Context, db *DB) error {
	rows, err := db.w.QueryContext(ctx, "SELECT proto, direction, packets, bytes FROM traffic")
	if err != nil {
		return fmt.Errorf("read traffic: %w", err)
	}
	defer rows.Close()
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for rows.Next() {
		var proto, dir string
		var p, b int64
		if err := rows.Scan(&proto, &dir, &p, &b); err != nil {
			return fmt.Errorf("read traffic: %w", err)
		}
		n, ok := protoNumber(proto)
		if !ok {
			continue // not written by this package
		}
		tt.t[trafficLabel(uint8(n), directionCode(dir))] = counters{p, b}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read traffic: %w", err)
	}
	// Versions start at the time of Open, so that those of a database
	// opened later (the same file after a restart of the store within
	// one process) are greater than the earlier one's.
	tt.version = uint64(time.Now().UnixNano())
	return nil
}

// write stores the totals a batch's delta makes, in the batch's
// transaction.
func (tt *trafficTotals) write(w *batchWriter) error {
	d := &w.traffic
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, l := range d.touched {
		cur, add := tt.t[l], d.d[l]
		a := w.args(4)
		a[0].Value, a[1].Value = record.ProtoName(uint8(l/4)), directionNames[l%4]
		a[2].Value, a[3].Value = sat(cur.p, add.p), sat(cur.b, add.b)
		if _, err := w.exec(sUpsertTraffic, a); err != nil {
			return fmt.Errorf("write traffic: %w", err)
		}
	}
	return nil
}

// commit adds a committed batch's delta to the totals.
func (tt *trafficTotals) commit(d *trafficDelta) {
	if len(d.touched) == 0 {
		return
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, l := range d.touched {
		c := &tt.t[l]
		c.p, c.b = sat(c.p, d.d[l].p), sat(c.b, d.d[l].b)
	}
	tt.version++
}

func (tt *trafficTotals) read() ([]TrafficCount, uint64) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var out []TrafficCount
	for l, c := range tt.t {
		if c != (counters{}) {
			out = append(out, TrafficCount{Proto: record.ProtoName(uint8(l / 4)), Direction: directionNames[l%4],
				Packets: uint64(max(c.p, 0)), Bytes: uint64(max(c.b, 0))})
		}
	}
	slices.SortFunc(out, func(a, b TrafficCount) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Direction, b.Direction))
	})
	return out, tt.version
}
