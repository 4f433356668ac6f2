package store

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

func TestExpPlans(t *testing.T) {
	path := "/tmp/plan.db"
	fresh := false
	if _, err := os.Stat(path); err != nil {
		fresh = true
	}
	db := openAt(t, path, Options{MaxSize: -1, Retention: -1})
	if fresh {
		s := newSim(5, 20000)
		for i := range 300 {
			b := s.batch(2000, 1000, 0) // 1000 new flows per batch
			mustApply(t, db, s.cap, b)
			_ = i
		}
	}
	var n int
	db.r.QueryRow("SELECT COUNT(*) FROM flows").Scan(&n)
	t.Log("flows", n)
	if os.Getenv("ANALYZE") != "" {
		db.w.Exec("PRAGMA optimize=0x10002")
	}
	qs := map[string]FlowQuery{
		"default":      {},
		"ip":           {IP: netip.MustParseAddr("10.0.1.7")},
		"ip+bytes":     {IP: netip.MustParseAddr("10.0.1.7"), Order: OrderBytes},
		"cidr16":       {CIDR: mustPrefix("10.0.0.0/16")},
		"cidr24":       {CIDR: mustPrefix("10.0.2.0/24")},
		"cidr v6 /64":  {CIDR: mustPrefix("2001:db8:0:2::/64")},
		"port443":      {Port: 443},
		"port22":       {Port: 22},
		"proto sctp":   {Proto: "sctp"},
		"proto tcp":    {Proto: "tcp"},
		"state REJ":    {State: "REJ"},
		"dir inbound":  {Direction: "inbound"},
		"since recent": {Since: simStart.Add(290 * time.Second)},
		"until early":  {Until: simStart.Add(5 * time.Second)},
		"bytes":        {Order: OrderBytes},
		"packets asc":  {Order: OrderPackets, Ascending: true},
		"first_seen":   {Order: OrderFirstSeen},
		"combo":        {CIDR: mustPrefix("10.0.0.0/16"), Port: 443, Proto: "tcp", State: "SF"},
	}
	names := []string{}
	for k := range qs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		q := qs[name]
		p, _ := planFlows(q)
		// plan text
		var durs []time.Duration
		var cnt int
		for range 5 {
			t0 := time.Now()
			fs, next, err := db.Flows(t.Context(), q)
			durs = append(durs, time.Since(t0))
			cnt = len(fs)
			if err != nil {
				t.Fatal(err)
			}
			if next != "" {
				q2 := q
				q2.Cursor = next
				t0 = time.Now()
				db.Flows(t.Context(), q2)
				durs = append(durs, time.Since(t0))
			}
		}
		sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
		plan := ""
		_ = p
		t.Logf("%-14s n=%d max %v med %v | %s", name, cnt, durs[len(durs)-1].Round(time.Microsecond), durs[len(durs)/2].Round(time.Microsecond), plan)
	}
	t0 := time.Now()
	k := 0
	db.EachFlow(t.Context(), FlowQuery{}, func(*record.Flow) error { k++; return nil })
	t.Logf("each flow: %d in %v", k, time.Since(t0))
}

func explain(t *testing.T, db *DB, p *flowPlan) string {
	col := orderCols[p.order].col
	q := "EXPLAIN QUERY PLAN SELECT rid FROM flows"
	if len(p.where) > 0 {
		q += " WHERE " + joinAnd(p.where)
	}
	q += fmt.Sprintf(" ORDER BY %s DESC, rid DESC LIMIT 101", col)
	rows, err := db.r.Query(q, p.args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := ""
	for rows.Next() {
		var id, parent, notused int
		var detail string
		rows.Scan(&id, &parent, &notused, &detail)
		out += detail + "; "
	}
	return out
}

func joinAnd(s []string) string {
	r := ""
	for i, x := range s {
		if i > 0 {
			r += " AND "
		}
		r += x
	}
	return r
}
