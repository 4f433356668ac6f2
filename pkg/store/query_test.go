package store

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// model is what the store should hold: the latest record of each flow, and
// the order each id was first stored in (the rid tie-breaker).
type model struct {
	flows map[string]record.Flow
	order map[string]int
}

func newModel() *model {
	return &model{flows: map[string]record.Flow{}, order: map[string]int{}}
}

// apply mirrors ApplyBatch: flows not superseded in the batch, then the
// final records; a new id takes the next rid.
func (m *model) apply(b *Batch) {
	ended := map[string]bool{}
	for _, f := range b.Ended {
		ended[f.ID] = true
	}
	put := func(f record.Flow) {
		if _, ok := m.order[f.ID]; !ok {
			m.order[f.ID] = len(m.order)
		}
		m.flows[f.ID] = f
	}
	for _, f := range b.Flows {
		if !ended[f.ID] {
			put(f)
		}
	}
	for _, f := range b.Ended {
		put(f)
	}
}

// refAddr is the reference 16-byte form of a textual address.
func refAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, false
	}
	return netip.AddrFrom16(a.As16()), true
}

// matches is the brute-force filter, written from FlowQuery's documentation
// with netip, independently of the SQL.
func matches(f *record.Flow, q FlowQuery) bool {
	src, okS := refAddr(f.SrcIP)
	dst, okD := refAddr(f.DstIP)
	if q.IP.IsValid() {
		a := netip.AddrFrom16(q.IP.As16())
		if !(okS && src == a) && !(okD && dst == a) {
			return false
		}
	}
	if q.CIDR.IsValid() {
		p := q.CIDR.Masked()
		if p.Addr().Is4() {
			p = netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96)
		}
		if !(okS && p.Contains(src)) && !(okD && p.Contains(dst)) {
			return false
		}
	}
	if q.Port != 0 && int(f.SrcPort) != q.Port && int(f.DstPort) != q.Port {
		return false
	}
	if q.Proto != "" {
		n, err := strconv.Atoi(q.Proto)
		if !strings.EqualFold(f.Proto, q.Proto) && (err != nil || n != int(f.ProtoNum)) {
			return false
		}
	}
	if q.State != "" && !strings.EqualFold(f.State, q.State) {
		return false
	}
	if q.Direction != "" && !strings.EqualFold(f.Direction, q.Direction) {
		return false
	}
	if !q.Since.IsZero() && f.LastSeen.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !f.FirstSeen.Before(q.Until) {
		return false
	}
	return true
}

// want returns the ids q selects from the model, in q's order.
func (m *model) want(q FlowQuery) []string {
	var fs []record.Flow
	for _, f := range m.flows {
		if matches(&f, q) {
			fs = append(fs, f)
		}
	}
	key := func(f *record.Flow) int64 {
		switch q.Order {
		case OrderFirstSeen:
			return f.FirstSeen.UnixNano()
		case OrderBytes:
			return int64(f.BytesSent + f.BytesReceived)
		case OrderPackets:
			return int64(f.PacketsSent + f.PacketsReceived)
		}
		return f.LastSeen.UnixNano()
	}
	slices.SortFunc(fs, func(a, b record.Flow) int {
		c := cmp.Or(cmp.Compare(key(&a), key(&b)), cmp.Compare(m.order[a.ID], m.order[b.ID]))
		if !q.Ascending {
			c = -c
		}
		return c
	})
	ids := make([]string, len(fs))
	for i := range fs {
		ids[i] = fs[i].ID
	}
	return ids
}

// pickAddr returns the source address of the flow with the smallest id
// among those whose source satisfies ok.
func (m *model) pickAddr(ok func(netip.Addr) bool) netip.Addr {
	var best string
	var addr netip.Addr
	for id, f := range m.flows {
		a, err := netip.ParseAddr(f.SrcIP)
		if err == nil && ok(a) && (best == "" || id < best) {
			best, addr = id, a
		}
	}
	return addr
}

// walk pages through q and returns the ids in the order received.
func walk(tb testing.TB, db *DB, q FlowQuery) []string {
	tb.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		fs, next, err := db.Flows(tb.Context(), q)
		if err != nil {
			tb.Fatalf("Flows(%+v): %v", q, err)
		}
		if pages > 100000 {
			tb.Fatal("endless walk")
		}
		limit := q.Limit
		if limit == 0 {
			limit = DefaultLimit
		}
		if len(fs) > limit || (next != "" && len(fs) != limit) {
			tb.Fatalf("page of %d with limit %d, next %q", len(fs), limit, next)
		}
		for _, f := range fs {
			ids = append(ids, f.ID)
		}
		if next == "" {
			return ids
		}
		q.Cursor = next
	}
}

// filterData stores a varied population (IPv4, IPv6, 4in6, every protocol,
// state and direction of the sim, ended and active flows, ties on every sort
// key) in db and in a model.
func filterData(tb testing.TB, db *DB) *model {
	tb.Helper()
	m := newModel()
	s := newSim(11, 800)
	for range 12 {
		b := s.batch(300, 40, 0)
		mustApply(tb, db, s.cap, b)
		m.apply(b)
	}
	// Ties: flows equal in every sort key, told apart by rid only.
	b := &Batch{Seq: s.seq + 1}
	for i := range 30 {
		f := s.newFlow()
		f.FirstSeen, f.LastSeen = ts(50), ts(60)
		f.PacketsSent, f.BytesSent, f.PacketsReceived, f.BytesReceived = 5, 500, 5, 500
		f.SrcIP = fmt.Sprintf("172.16.0.%d", i%3)
		b.Flows = append(b.Flows, f)
	}
	mustApply(tb, db, s.cap, b)
	m.apply(b)
	return m
}

// TestDB_Flows_Filters walks every filter and order, in pages, and compares
// with a brute-force filter and sort of the same data.
func TestDB_Flows_Filters(t *testing.T) {
	db := openTest(t, Options{})
	m := filterData(t, db)
	mid := simStart.Add(5 * time.Second)
	v4 := m.pickAddr(func(a netip.Addr) bool { return a.Is4() })
	v6 := m.pickAddr(func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() })
	v4in6 := m.pickAddr(func(a netip.Addr) bool { return a.Is4In6() })
	var v4State string
	for _, f := range m.flows {
		if f.SrcIP == v4.String() {
			v4State = f.State
		}
	}
	queries := map[string]FlowQuery{
		"all":                 {},
		"ip v4":               {IP: v4},
		"ip v4 of a 4in6":     {IP: v4in6.Unmap()}, // matches "10.x" and "::ffff:10.x" flows
		"ip 4in6 form":        {IP: netip.AddrFrom16(v4.As16())},
		"ip v6":               {IP: v6},
		"ip absent":           {IP: netip.MustParseAddr("203.0.113.9")},
		"cidr v4 /16":         {CIDR: mustPrefix("10.0.0.0/16")},
		"cidr v4 /24":         {CIDR: mustPrefix("10.0.2.0/24")},
		"cidr v4 /25 high":    {CIDR: mustPrefix("192.168.1.128/25")},
		"cidr v4 /32":         {CIDR: netip.PrefixFrom(v4, 32)},
		"cidr v4 unmasked":    {CIDR: mustPrefix("10.0.3.99/24")},
		"cidr v4 /0":          {CIDR: mustPrefix("0.0.0.0/0")},
		"cidr v6 /48":         {CIDR: mustPrefix("2001:db8::/48")},
		"cidr v6 /64":         {CIDR: mustPrefix("2001:db8:0:2::/64")},
		"cidr v6 /128":        {CIDR: netip.PrefixFrom(v6, 128)},
		"cidr v6 /0":          {CIDR: mustPrefix("::/0")},
		"cidr 4in6 /96":       {CIDR: mustPrefix("::ffff:0:0/96")},
		"port 443":            {Port: 443},
		"port 53":             {Port: 53},
		"proto tcp":           {Proto: "tcp"},
		"proto UDP":           {Proto: "UDP"},
		"proto 6":             {Proto: "6"},
		"proto 47":            {Proto: "47"},
		"proto icmpv6":        {Proto: "icmpv6"},
		"proto sctp":          {Proto: "sctp"},
		"state SF":            {State: "SF"},
		"state rej":           {State: "rej"},
		"direction inbound":   {Direction: "inbound"},
		"direction internal":  {Direction: "INTERNAL"},
		"since":               {Since: mid},
		"until":               {Until: mid},
		"since until":         {Since: simStart.Add(3 * time.Second), Until: simStart.Add(4 * time.Second)},
		"cidr port bytes":     {CIDR: mustPrefix("10.0.0.0/16"), Port: 443, Order: OrderBytes},
		"ip state first asc":  {IP: v4, State: strings.ToLower(v4State), Order: OrderFirstSeen, Ascending: true},
		"proto since packets": {Proto: "udp", Since: mid, Order: OrderPackets},
		"everything":          {CIDR: mustPrefix("::/0"), Port: 443, Proto: "tcp", State: "SF", Direction: "outbound", Since: simStart, Until: mid},
	}
	for _, o := range []Order{OrderLastSeen, OrderFirstSeen, OrderBytes, OrderPackets} {
		queries["order "+string(o)] = FlowQuery{Order: o}
		queries["order "+string(o)+" asc"] = FlowQuery{Order: o, Ascending: true}
		queries["ties "+string(o)] = FlowQuery{Order: o, CIDR: mustPrefix("172.16.0.0/24")}
		queries["ties "+string(o)+" asc"] = FlowQuery{Order: o, CIDR: mustPrefix("172.16.0.0/24"), Ascending: true}
	}
	// Both plans of a filtered page: the ordered scan (the budget covers
	// the table) and the filter's index (a budget of 50 rows runs out).
	for _, budget := range []int{orderedScanBudget, 50} {
		db.scanBudget = budget
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) { testFilters(t, db, m, queries) })
	}
	db.scanBudget = orderedScanBudget
	// Records come back whole.
	fs, _, err := db.Flows(t.Context(), FlowQuery{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if d := gocmp.Diff(m.flows[f.ID], f); d != "" {
			t.Fatalf("flow %s (-model +store):\n%s", f.ID, d)
		}
	}
}

func testFilters(t *testing.T, db *DB, m *model, queries map[string]FlowQuery) {
	for name, q := range queries {
		t.Run(name, func(t *testing.T) {
			want := m.want(q)
			if len(want) == 0 && name != "ip absent" {
				t.Fatalf("no flow matches: a vacuous case")
			}
			limits := []int{7, 0, MaxLimit}
			if raceEnabled { // one walk per budget: SQLite is slow under -race
				limits = []int{61}
				if db.scanBudget == orderedScanBudget {
					limits = []int{MaxLimit}
				}
			}
			for _, limit := range limits {
				q.Limit = limit
				got := walk(t, db, q)
				if d := gocmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
					t.Fatalf("limit %d: %d ids, want %d (-want +got):\n%s", limit, len(got), len(want), d)
				}
			}
		})
	}
}

// TestDB_Flows_Errors rejects bad cursors and arguments by name.
func TestDB_Flows_Errors(t *testing.T) {
	db := openTest(t, Options{})
	filterData(t, db)
	_, next, err := db.Flows(t.Context(), FlowQuery{Port: 443, Limit: 3})
	if err != nil || next == "" {
		t.Fatalf("first page: %q, %v", next, err)
	}
	for name, tc := range map[string]struct {
		q    FlowQuery
		want error
	}{
		"other filter":    {FlowQuery{Port: 80, Limit: 3, Cursor: next}, ErrBadCursor},
		"other order":     {FlowQuery{Port: 443, Order: OrderBytes, Cursor: next}, ErrBadCursor},
		"other direction": {FlowQuery{Port: 443, Ascending: true, Cursor: next}, ErrBadCursor},
		"garbage":         {FlowQuery{Cursor: "!!!"}, ErrBadCursor},
		"truncated":       {FlowQuery{Port: 443, Cursor: next[:len(next)-2]}, ErrBadCursor},
		"trailing":        {FlowQuery{Port: 443, Cursor: next + "AA"}, ErrBadCursor},
		"empty base64":    {FlowQuery{Cursor: "AAAA"}, ErrBadCursor},
		"port over 65535": {FlowQuery{Port: 65536}, ErrInvalid},
		"negative port":   {FlowQuery{Port: -1}, ErrInvalid},
		"unknown proto":   {FlowQuery{Proto: "gre"}, ErrInvalid},
		"proto over 255":  {FlowQuery{Proto: "256"}, ErrInvalid},
		"unknown order":   {FlowQuery{Order: "id"}, ErrInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := db.Flows(t.Context(), tc.q); !errors.Is(err, tc.want) {
				t.Errorf("Flows = %v, want %v", err, tc.want)
			}
			if err := db.EachFlow(t.Context(), tc.q, func(*record.Flow) error { return nil }); !errors.Is(err, tc.want) {
				t.Errorf("EachFlow = %v, want %v", err, tc.want)
			}
		})
	}
	// Out-of-range limits are bounded, not errors.
	fs, _, err := db.Flows(t.Context(), FlowQuery{Limit: 1 << 30})
	if err != nil || len(fs) != MaxLimit {
		t.Errorf("huge limit: %d flows, %v; want %d", len(fs), err, MaxLimit)
	}
}

// TestDB_EachFlow streams the same flows as paging, honours a total limit
// and a start cursor, and stops at fn's error.
func TestDB_EachFlow(t *testing.T) {
	db := openTest(t, Options{})
	m := filterData(t, db)
	for _, q := range []FlowQuery{{}, {Proto: "tcp", Order: OrderBytes}, {CIDR: mustPrefix("2001:db8::/32"), Ascending: true}} {
		want := m.want(q)
		var got []string
		if err := db.EachFlow(t.Context(), q, func(f *record.Flow) error {
			got = append(got, f.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if d := gocmp.Diff(want, got); d != "" {
			t.Errorf("EachFlow(%+v) (-want +got):\n%s", q, d)
		}
	}
	want := m.want(FlowQuery{})
	var got []string
	_ = db.EachFlow(t.Context(), FlowQuery{Limit: 300}, func(f *record.Flow) error {
		got = append(got, f.ID)
		return nil
	})
	if d := gocmp.Diff(want[:300], got); d != "" {
		t.Errorf("EachFlow limit 300 (-want +got):\n%s", d)
	}
	_, next, _ := db.Flows(t.Context(), FlowQuery{Limit: 10})
	got = got[:0]
	_ = db.EachFlow(t.Context(), FlowQuery{Cursor: next}, func(f *record.Flow) error {
		got = append(got, f.ID)
		return nil
	})
	if d := gocmp.Diff(want[10:], got); d != "" {
		t.Errorf("EachFlow from a cursor (-want +got):\n%s", d)
	}
	stop := errors.New("stop")
	n := 0
	err := db.EachFlow(t.Context(), FlowQuery{}, func(*record.Flow) error {
		if n++; n == 500 {
			return stop
		}
		return nil
	})
	if err != stop || n != 500 {
		t.Errorf("EachFlow stopped after %d with %v, want 500 and the fn's error", n, err)
	}
}

// TestDB_Flows_PagingUnderWrites walks listings while another goroutine
// keeps writing, and checks that every row present before the walk is seen
// exactly once and no row twice: with new flows only (any order), and with
// new flows plus updates of existing ones (first_seen, a key that never
// changes).
func TestDB_Flows_PagingUnderWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		updates bool
		orders  []FlowQuery
	}{
		{"inserts", false, []FlowQuery{
			{Limit: 40}, {Order: OrderFirstSeen, Ascending: true, Limit: 75},
			{Order: OrderBytes, Limit: 33}, {Order: OrderPackets, Ascending: true, Limit: 50},
			{CIDR: mustPrefix("10.0.0.0/8"), Limit: 20},
		}},
		{"inserts and updates", true, []FlowQuery{
			{Order: OrderFirstSeen, Limit: 40}, {Order: OrderFirstSeen, Ascending: true, Limit: 64},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, Options{AggregationWindow: time.Minute})
			s := newSim(21, scaled(600, 300))
			for range scaled(6, 4) {
				mustApply(t, db, s.cap, s.batch(scaled(300, 150), scaled(100, 50), 0))
			}
			before := map[string]bool{}
			if err := db.EachFlow(t.Context(), FlowQuery{}, func(f *record.Flow) error {
				before[f.ID] = true
				return nil
			}); err != nil {
				t.Fatal(err)
			}

			// The writer writes until the walks are done, but at most a
			// fixed number of batches: a walk chasing rows appended at its
			// end would never finish under a writer faster than it.
			batches := int64(scaled(300, 60))
			done := make(chan struct{})
			var wg sync.WaitGroup
			var writes atomic.Int64
			wg.Add(1)
			go func() {
				defer wg.Done()
				fresh := newSim(22, 50) // other ids, overlapping times
				seq := s.seq
				for i := range int(batches) {
					select {
					case <-done:
						return
					default:
					}
					var b *Batch
					if tc.updates && i%2 == 1 {
						b = s.batch(200, 20, 0) // updates, ends and new flows
					} else {
						b = &Batch{}
						for range 25 {
							b.Flows = append(b.Flows, fresh.newFlow())
						}
					}
					seq++
					b.Seq = seq
					if ok, err := db.ApplyBatch(t.Context(), s.cap, b); err != nil || !ok {
						t.Errorf("concurrent ApplyBatch: %t, %v", ok, err)
						return
					}
					writes.Add(1)
				}
			}()
			overlapped := 0
			for _, q := range tc.orders {
				seen := map[string]int{}
				w0 := writes.Load()
				for _, id := range walk(t, db, q) {
					seen[id]++
				}
				if w1 := writes.Load(); w1 > w0 && w0 < batches {
					overlapped++
				}
				for id, n := range seen {
					if n > 1 {
						t.Errorf("%+v: flow %s seen %d times", q, id, n)
					}
				}
				for id := range before {
					f := m0(t, db, id)
					if matches(&f, q) && seen[id] != 1 {
						t.Errorf("%+v: flow %s present before the walk seen %d times", q, id, seen[id])
					}
				}
			}
			close(done)
			wg.Wait()
			if overlapped == 0 {
				t.Errorf("no walk overlapped a write")
			}
			t.Logf("%d of %d walks overlapped writes", overlapped, len(tc.orders))
		})
	}
}

// m0 reads one flow (for matching the filters of a walk).
func m0(tb testing.TB, db *DB, id string) record.Flow {
	tb.Helper()
	f, err := db.Flow(tb.Context(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}
