package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Limits of Series.
const (
	// MaxSeriesBuckets bounds SeriesQuery.Buckets.
	MaxSeriesBuckets = 1440
	// SeriesTopKeys is the number of keys Series returns on their own;
	// the rest are summed as SeriesOther.
	SeriesTopKeys = 8
	// maxSeriesKeys bounds the distinct keys a Series query keeps: the
	// first ones met get their own counters, the later ones go straight
	// into SeriesOther. It bounds memory whatever the number of peers:
	// 257 × (MaxSeriesBuckets+1) counters, 3 MiB at most.
	maxSeriesKeys = 256
	// seriesChunk is the rids a scan reads per statement (each its own
	// short read transaction).
	seriesChunk = 16384
)

// SeriesOther is the key of the traffic of every key but the top ones.
const SeriesOther = "other"

// Groupings of a series (SeriesQuery.By).
const (
	// SeriesByProto groups by protocol name (record.ProtoName).
	SeriesByProto = "proto"
	// SeriesByPeer groups by the remote address: the source of an
	// inbound flow, the destination of any other.
	SeriesByPeer = "peer"
	// SeriesByDirection groups by flow direction: inbound, outbound,
	// internal or unknown.
	SeriesByDirection = "direction"
)

// Metrics of a series (SeriesQuery.Metric).
const (
	SeriesBytes   = "bytes"
	SeriesPackets = "packets"
)

// Sources of a series (SeriesResult.Source).
const (
	// SourceWindows is flow_windows: each window's traffic lands in the
	// bucket that holds the window's start.
	SourceWindows = "windows"
	// SourceFlows is the flows table: each flow's traffic is spread
	// evenly over [first_seen, last_seen].
	SourceFlows = "flows"
)

// SeriesQuery asks for traffic over time: Buckets buckets of Step each,
// bucket i covering [Since + i·Step, Since + (i+1)·Step).
type SeriesQuery struct {
	// Filter selects the flows counted, by IP, CIDR, Port, Proto, State
	// and Direction; its other fields are ignored.
	Filter FlowQuery
	// Since is the start of the first bucket.
	Since time.Time
	// Step is the width of a bucket, at least one second.
	Step time.Duration
	// Buckets is the number of buckets, 1 to MaxSeriesBuckets.
	Buckets int
	// By is one of the SeriesBy constants (default SeriesByProto).
	By string
	// Metric is SeriesBytes (the default) or SeriesPackets.
	Metric string
}

// Series is the traffic of one key over the buckets.
type Series struct {
	Key string
	// Total is the sum of Values.
	Total uint64
	// Values has one count per bucket.
	Values []uint64
}

// SeriesResult is the answer of DB.Series.
type SeriesResult struct {
	// Source is SourceWindows when the aggregation window is on, else
	// SourceFlows.
	Source string
	// Exact is true when each bucket holds exactly the traffic counted in
	// it: windows whose width divides Step, with Since on a window
	// boundary. The flows source is an estimate.
	Exact bool
	// Series are sorted by Total, largest first (ties by key); at most
	// SeriesTopKeys keys, plus SeriesOther when there were more. Keys
	// without traffic are left out.
	Series []Series
}

// AggregationWindow returns the width of the per-flow windows
// (Options.AggregationWindow in whole seconds), zero when they are off.
func (db *DB) AggregationWindow() time.Duration {
	return time.Duration(db.window) * time.Second
}

// Series returns the traffic of the flows q.Filter selects over q's
// buckets, grouped by q.By. With the aggregation window on, it reads
// flow_windows (the traffic the store counted per window) and is exact
// when the window's width divides q.Step; otherwise it reads the flows and
// spreads each one's packets or bytes evenly over [first_seen, last_seen]
// (all in one bucket when they are equal), so a flow's traffic in a
// bucket is an estimate, but the sum over the buckets of a flow the range
// covers is its whole traffic.
//
// Memory is bounded by the buckets and maxSeriesKeys, whatever the number
// of flows: rows are streamed, and keys met after maxSeriesKeys others
// count as SeriesOther. A large range is read in chunks of rids, each its
// own short read transaction; a range or filter with few matches is read
// through its index in one.
func (db *DB) Series(ctx context.Context, q SeriesQuery) (*SeriesResult, error) {
	const op = "read series"
	step := q.Step.Nanoseconds()
	if step < int64(time.Second) || q.Buckets < 1 || q.Buckets > MaxSeriesBuckets {
		return nil, wrap(op, fmt.Errorf("step %v, %d buckets: %w", q.Step, q.Buckets, ErrInvalid))
	}
	since := q.Since.UnixNano()
	if q.Since.Before(time.Unix(0, 0)) || step > (math.MaxInt64-since)/int64(q.Buckets) {
		return nil, wrap(op, fmt.Errorf("range from %v out of bounds: %w", q.Since, ErrInvalid))
	}
	by, keyCol := q.By, ""
	switch by {
	case "", SeriesByProto:
		by, keyCol = SeriesByProto, "f.proto_num"
	case SeriesByPeer:
		keyCol = "CASE WHEN f.direction = 'inbound' THEN f.src_ip ELSE f.dst_ip END"
	case SeriesByDirection:
		keyCol = "f.direction"
	default:
		return nil, wrap(op, fmt.Errorf("series by %q: %w", q.By, ErrInvalid))
	}
	var metric string // the two columns summed, after "w." or "f."
	switch q.Metric {
	case "", SeriesBytes:
		metric = "bytes_sent, %[1]s.bytes_received"
	case SeriesPackets:
		metric = "packets_sent, %[1]s.packets_received"
	default:
		return nil, wrap(op, fmt.Errorf("series metric %q: %w", q.Metric, ErrInvalid))
	}
	acc := newSeriesAcc(by, since, step, q.Buckets)
	res := &SeriesResult{Source: SourceFlows}
	var err error
	if db.window > 0 {
		w := db.window * int64(time.Second)
		res.Source = SourceWindows
		res.Exact = step%w == 0 && since%w == 0
		err = db.seriesWindows(ctx, q.Filter, acc, "w."+fmt.Sprintf(metric, "w"), keyCol)
	} else {
		err = db.seriesFlows(ctx, q.Filter, acc, "f."+fmt.Sprintf(metric, "f"), keyCol)
	}
	if err != nil {
		return nil, wrap(op, err)
	}
	res.Series = acc.result()
	return res, nil
}

// seriesFlows adds the flows that overlap the range, spread over it.
func (db *DB) seriesFlows(ctx context.Context, filter FlowQuery, acc *seriesAcc, metric, keyCol string) error {
	fq := seriesFilter(filter)
	fq.Since, fq.Until = time.Unix(0, acc.since), time.Unix(0, acc.until)
	p, err := planFlows(fq)
	if err != nil {
		return err
	}
	cols := "SELECT f.first_seen, f.last_seen, " + metric + ", " + keyCol + " FROM flows AS f"
	scan := func(rows *sql.Rows) error {
		var first, last, a, b int64
		var key sql.RawBytes
		for rows.Next() {
			if err := rows.Scan(&first, &last, &a, &b, &key); err != nil {
				return err
			}
			acc.spread(acc.key(key), first, last, uint64(a)+uint64(b))
		}
		return rows.Err()
	}
	chunked, err := db.seriesIndexed(ctx, p, func(tx *sql.Tx, best int) error {
		cond, args := p.where(best, true)
		return query(ctx, tx, cols+" WHERE "+cond, args, scan)
	})
	if err != nil || !chunked {
		return err
	}
	cond, args := p.where(-1, true)
	return db.eachRidChunk(ctx, func(lo, hi int64) error {
		return query(ctx, db.r, cols+" WHERE f.rid BETWEEN ? AND ? AND "+cond, append([]any{lo, hi}, args...), scan)
	})
}

// seriesWindows adds the windows that start in the range, of the flows
// filter selects.
func (db *DB) seriesWindows(ctx context.Context, filter FlowQuery, acc *seriesAcc, metric, keyCol string) error {
	p, err := planFlows(seriesFilter(filter))
	if err != nil {
		return err
	}
	// Window starts are whole seconds: start*1e9 in [since, until).
	lo := ceilDiv(acc.since, int64(time.Second))
	hi := ceilDiv(acc.until, int64(time.Second))
	cols := "SELECT w.start, " + metric + ", " + keyCol
	scan := func(rows *sql.Rows) error {
		var start, a, b int64
		var key sql.RawBytes
		for rows.Next() {
			if err := rows.Scan(&start, &a, &b, &key); err != nil {
				return err
			}
			acc.add(acc.key(key), start*int64(time.Second), uint64(a)+uint64(b))
		}
		return rows.Err()
	}
	and := func(cond string) string {
		if cond == "" {
			return ""
		}
		return " AND " + cond
	}

	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM (SELECT 1 FROM flow_windows WHERE start >= ? AND start < ? LIMIT %d)",
		probeCap), lo, hi).Scan(&n); err != nil {
		return err
	}
	if n < probeCap {
		// Few windows in the range: read them through their index.
		cond, args := p.where(-1, true)
		return query(ctx, tx, cols+" FROM flow_windows AS w INDEXED BY flow_windows_start CROSS JOIN flows AS f ON f.rid = w.flow_rid"+
			" WHERE w.start >= ? AND w.start < ?"+and(cond), append([]any{lo, hi}, args...), scan)
	}
	if len(p.terms) > 0 {
		best, count, err := rarestTerm(ctx, tx, p)
		if err != nil {
			return err
		}
		if count < probeCap {
			// Few flows match: read them through the filter's index,
			// and their windows by primary key.
			cond, args := p.where(best, true)
			return query(ctx, tx, cols+" FROM flows AS f CROSS JOIN flow_windows AS w ON w.flow_rid = f.rid"+
				" AND w.start >= ? AND w.start < ? WHERE "+cond, append([]any{lo, hi}, args...), scan)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	cond, args := p.where(-1, true)
	return db.eachRidChunk(ctx, func(from, to int64) error {
		return query(ctx, db.r, cols+" FROM flow_windows AS w CROSS JOIN flows AS f ON f.rid = w.flow_rid"+
			" WHERE w.flow_rid BETWEEN ? AND ? AND +w.start >= ? AND +w.start < ?"+and(cond),
			append([]any{from, to, lo, hi}, args...), scan)
	})
}

// seriesFilter keeps the filters of a series' flow query.
func seriesFilter(q FlowQuery) FlowQuery {
	return FlowQuery{IP: q.IP, CIDR: q.CIDR, Port: q.Port, Proto: q.Proto, State: q.State, Direction: q.Direction}
}

// seriesIndexed counts the matches of p's rarest term (up to probeCap) in a
// read transaction and, when there are fewer, calls read with it in the
// same transaction. It reports whether the caller must read in chunks
// instead.
func (db *DB) seriesIndexed(ctx context.Context, p *flowPlan, read func(tx *sql.Tx, best int) error) (chunked bool, err error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	best, count, err := rarestTerm(ctx, tx, p)
	if err != nil {
		return false, err
	}
	if count >= probeCap {
		return true, nil
	}
	if err := read(tx, best); err != nil {
		return false, err
	}
	return false, tx.Commit()
}

// eachRidChunk calls fn with consecutive ranges [lo, hi] of at most
// seriesChunk flow rids, up to the largest rid stored when it starts
// (flows inserted since are left out).
func (db *DB) eachRidChunk(ctx context.Context, fn func(lo, hi int64) error) error {
	var maxRid sql.NullInt64
	if err := db.r.QueryRowContext(ctx, "SELECT MAX(rid) FROM flows").Scan(&maxRid); err != nil {
		return err
	}
	for lo := int64(1); lo <= maxRid.Int64; lo += seriesChunk {
		if err := fn(lo, lo+seriesChunk-1); err != nil {
			return err
		}
	}
	return nil
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// query runs q and hands its rows to scan.
func query(ctx context.Context, db querier, q string, args []any, scan func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return scan(rows)
}

// ceilDiv is ⌈a/b⌉ for b > 0.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b > 0 {
		q++
	}
	return q
}

// seriesAcc sums traffic per key per bucket. Each key's counts are kept
// as a difference array (diff[j] - diff[j-1] is bucket j's count, modulo
// 2^64), so spreading a flow over any number of buckets costs O(1).
type seriesAcc struct {
	by           string
	since, until int64 // Unix ns
	step         int64 // ns
	n            int   // buckets
	index        map[string]int
	keys         []string
	diffs        [][]uint64 // per key, n+1 entries; the last is SeriesOther's
	totals       []uint64
	other        int // index of SeriesOther in diffs and totals
}

func newSeriesAcc(by string, since, step int64, n int) *seriesAcc {
	return &seriesAcc{by: by, since: since, step: step, n: n, until: since + step*int64(n),
		index: make(map[string]int), other: -1}
}

// key returns the index of the counters of a key as scanned (raw).
func (a *seriesAcc) key(raw []byte) int {
	if i, ok := a.index[string(raw)]; ok {
		return i
	}
	if len(a.keys) >= maxSeriesKeys {
		if a.other < 0 {
			a.other = a.newCounters()
		}
		return a.other
	}
	var name string
	switch a.by {
	case SeriesByProto:
		n, err := strconv.ParseUint(string(raw), 10, 8)
		if err != nil {
			name = string(raw)
		} else {
			name = record.ProtoName(uint8(n))
		}
	case SeriesByDirection:
		name = string(raw)
		if name == "" {
			name = "unknown"
		}
	default:
		name = string(raw)
	}
	i := a.newCounters()
	a.index[string(raw)] = i
	a.keys = append(a.keys, name)
	return i
}

// newCounters adds the counters of a key. Those of key i (in keys) are at
// index i; SeriesOther's come after the maxSeriesKeys keys.
func (a *seriesAcc) newCounters() int {
	a.diffs = append(a.diffs, make([]uint64, a.n+1))
	a.totals = append(a.totals, 0)
	return len(a.diffs) - 1
}

// addRange adds v to each bucket in [from, to) of key k.
func (a *seriesAcc) addRange(k, from, to int, v uint64) {
	if v == 0 || from >= to {
		return
	}
	a.diffs[k][from] += v
	a.diffs[k][to] -= v
}

// add adds v to the bucket holding time t (Unix ns), if any.
func (a *seriesAcc) add(k int, t int64, v uint64) {
	if t < a.since || t >= a.until {
		return
	}
	j := int((t - a.since) / a.step)
	a.addRange(k, j, j+1, v)
	a.totals[k] += v
}

// spread adds v spread evenly over [first, last] (Unix ns): the part of v
// before time t is ⌊v·(t-first)/(last-first)⌋, so the buckets of a flow
// the range covers sum to v exactly. Buckets wholly inside the flow share
// their part equally (the remainder, less than their number, one unit
// each to the first ones).
func (a *seriesAcc) spread(k int, first, last int64, v uint64) {
	if last <= first {
		a.add(k, first, v)
		return
	}
	d := last - first
	part := func(t int64) uint64 {
		if t <= first {
			return 0
		}
		if t >= last {
			return v
		}
		hi, lo := bits.Mul64(v, uint64(t-first))
		q, _ := bits.Div64(hi, lo, uint64(d)) // hi < d since t-first < d
		return q
	}
	from, to := max(first, a.since), min(last, a.until)
	if from >= to {
		return
	}
	j0 := int((from - a.since) / a.step)
	j1 := int((to - a.since) / a.step)
	if a.since+int64(j1)*a.step == to {
		j1-- // to is the end of bucket j1-1
	}
	a.totals[k] += part(to) - part(from)
	if j0 == j1 {
		a.addRange(k, j0, j0+1, part(to)-part(from))
		return
	}
	end0 := a.since + int64(j0+1)*a.step
	start1 := a.since + int64(j1)*a.step
	a.addRange(k, j0, j0+1, part(end0)-part(from))
	a.addRange(k, j1, j1+1, part(to)-part(start1))
	if m := j1 - j0 - 1; m > 0 {
		mid := part(start1) - part(end0)
		q, r := mid/uint64(m), int(mid%uint64(m))
		a.addRange(k, j0+1, j1, q)
		a.addRange(k, j0+1, j0+1+r, 1)
	}
}

// result returns the top keys and SeriesOther, sorted by total.
func (a *seriesAcc) result() []Series {
	type kt struct {
		i     int
		key   string
		total uint64
	}
	var ranked []kt
	for i, key := range a.keys {
		if a.totals[i] > 0 {
			ranked = append(ranked, kt{i, key, a.totals[i]})
		}
	}
	slices.SortFunc(ranked, func(x, y kt) int { return cmp.Or(cmp.Compare(y.total, x.total), cmp.Compare(x.key, y.key)) })
	values := func(diff []uint64) []uint64 {
		out := make([]uint64, a.n)
		var run uint64
		for j := range out {
			run += diff[j]
			out[j] = run
		}
		return out
	}
	out := make([]Series, 0, min(len(ranked), SeriesTopKeys)+1)
	for _, r := range ranked[:min(len(ranked), SeriesTopKeys)] {
		out = append(out, Series{Key: r.key, Total: r.total, Values: values(a.diffs[r.i])})
	}
	rest := ranked[min(len(ranked), SeriesTopKeys):]
	if len(rest) > 0 || (a.other >= 0 && a.totals[a.other] > 0) {
		other := make([]uint64, a.n+1)
		var total uint64
		add := func(i int) {
			for j, v := range a.diffs[i] {
				other[j] += v
			}
			total += a.totals[i]
		}
		for _, r := range rest {
			add(r.i)
		}
		if a.other >= 0 {
			add(a.other)
		}
		out = append(out, Series{Key: SeriesOther, Total: total, Values: values(other)})
		slices.SortStableFunc(out, func(x, y Series) int { return cmp.Compare(y.Total, x.Total) })
	}
	return out
}
