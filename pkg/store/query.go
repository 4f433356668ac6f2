package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Limits of every listing.
const (
	// DefaultLimit is the page size when a query's Limit is zero.
	DefaultLimit = 100
	// MaxLimit is the largest page a query returns; larger limits are
	// lowered to it.
	MaxLimit = 1000
	// MaxSeriesLimit bounds WindowSeries and StatsSeries.
	MaxSeriesLimit = 10000
	// DefaultSeriesLimit is their limit when zero.
	DefaultSeriesLimit = 3600
)

// Order is the sort order of a flow listing. Every order breaks ties by the
// flow's insertion order, so it is total.
type Order string

// Orders of FlowQuery. All sort descending (newest, largest first) unless
// FlowQuery.Ascending.
const (
	OrderLastSeen  Order = "last_seen" // the default
	OrderFirstSeen Order = "first_seen"
	OrderBytes     Order = "bytes"   // bytes_sent + bytes_received
	OrderPackets   Order = "packets" // packets_sent + packets_received
)

// orderCols maps an order to its column and index, and to its number in
// cursors (the position).
var orderCols = []struct {
	order Order
	col   string
	index string // on (col), rid implied
}{
	{OrderLastSeen, "last_seen", "flows_last_seen"},
	{OrderFirstSeen, "first_seen", "flows_first_seen"},
	{OrderBytes, "bytes", "flows_bytes"},
	{OrderPackets, "packets", "flows_packets"},
}

// FlowQuery selects flows. Zero fields do not filter. All filters must hold.
type FlowQuery struct {
	// IP matches flows with this address on either side (compared as
	// addresses: "::ffff:10.0.0.1" and "10.0.0.1" are the same).
	IP netip.Addr
	// CIDR matches flows with an address in this prefix on either side.
	// Addresses compare in their 16-byte form, IPv4 as IPv4-mapped IPv6:
	// 10.0.0.0/8 matches IPv4 10.x.y.z, ::/0 matches every address.
	CIDR netip.Prefix
	// Port matches flows with this port on either side, 1-65535 (port 0
	// cannot be asked for: use Proto for port-less protocols).
	Port int
	// Proto matches the protocol by its name as record.ProtoName gives it
	// (case-insensitive: "tcp", "icmpv6") or its number ("6", "47"); any
	// other name is ErrInvalid.
	Proto string
	// State matches the Zeek conn_state (case-insensitive: "SF", "REJ").
	State string
	// Direction matches "inbound", "outbound" or "internal".
	Direction string
	// Since and Until keep flows whose [first_seen, last_seen] overlaps
	// [Since, Until): last_seen >= Since and first_seen < Until.
	Since, Until time.Time
	// Order sorts the flows (default OrderLastSeen), descending unless
	// Ascending.
	Order     Order
	Ascending bool
	// Limit is the page size: zero means DefaultLimit, over MaxLimit means
	// MaxLimit. For EachFlow it is the total number of flows, zero for all.
	Limit int
	// Cursor continues a listing where the page that returned it ended.
	// It is opaque, and valid only with the same filters and order.
	Cursor string
}

// protoNumber returns the IP protocol number of a name record.ProtoName
// gives ("tcp", any case) or of a decimal number ("47").
func protoNumber(s string) (int64, bool) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return int64(n), true
	}
	s = strings.ToLower(s)
	for n := range 256 {
		if record.ProtoName(uint8(n)) == s {
			return int64(n), true
		}
	}
	return 0, false
}

// flowCols are the record.Flow columns, in scanFlow's order.
const flowCols = `id, community_id, proto, proto_num, src_ip, src_port, dst_ip, dst_port, vlan,
	first_seen, last_seen, packets_sent, bytes_sent, packets_received, bytes_received,
	tcp_flags, history, state, direction, end_reason`

type scanner interface{ Scan(dest ...any) error }

// scanFlow scans flowCols after the given leading destinations.
func scanFlow(s scanner, f *record.Flow, lead ...any) error {
	var protoNum, srcPort, dstPort, vlan int64
	var first, last, ps, bs, pr, br int64
	dest := append(lead, &f.ID, &f.CommunityID, &f.Proto, &protoNum, &f.SrcIP, &srcPort,
		&f.DstIP, &dstPort, &vlan, &first, &last, &ps, &bs, &pr, &br,
		&f.TCPFlags, &f.History, &f.State, &f.Direction, &f.EndReason)
	if err := s.Scan(dest...); err != nil {
		return err
	}
	f.ProtoNum, f.SrcPort, f.DstPort, f.VLAN = uint8(protoNum), uint16(srcPort), uint16(dstPort), uint16(vlan)
	f.FirstSeen, f.LastSeen = record.Time{Time: fromUnixNano(first)}, record.Time{Time: fromUnixNano(last)}
	f.PacketsSent, f.BytesSent, f.PacketsReceived, f.BytesReceived = uint64(ps), uint64(bs), uint64(pr), uint64(br)
	return nil
}

// Flow returns the stored record of the flow with this id, or an error
// wrapping ErrNotFound.
func (db *DB) Flow(ctx context.Context, id string) (record.Flow, error) {
	var f record.Flow
	err := scanFlow(db.r.QueryRowContext(ctx, "SELECT "+flowCols+" FROM flows WHERE id = ?", id), &f)
	if err == sql.ErrNoRows {
		return f, wrap("read flow", fmt.Errorf("flow %q: %w", id, ErrNotFound))
	}
	return f, wrap("read flow", err)
}

// Flows returns one page of the flows q selects, and the cursor of the next
// page ("" after the last page). The page is read in one short read
// transaction.
func (db *DB) Flows(ctx context.Context, q FlowQuery) ([]record.Flow, string, error) {
	p, err := planFlows(q)
	if err != nil {
		return nil, "", wrap("list flows", err)
	}
	flows := make([]record.Flow, 0, min(p.limit, 64))
	next, err := db.flowPage(ctx, p, func(f *record.Flow) error {
		flows = append(flows, *f)
		return nil
	})
	if err != nil {
		return nil, "", wrap("list flows", err)
	}
	return flows, next, nil
}

// EachFlow calls fn with every flow q selects, in q's order, reading them a
// page at a time (each page its own short read transaction), so memory stays
// bounded whatever the count: the ndjson export. q.Limit bounds the total,
// zero meaning all; q.Cursor starts the walk. fn must not keep f; an error
// from fn stops the walk and is returned as is. The walk has the guarantees
// of paging (see the package documentation), not of one snapshot.
func (db *DB) EachFlow(ctx context.Context, q FlowQuery, fn func(f *record.Flow) error) error {
	total := q.Limit
	q.Limit = 0
	p, err := planFlows(q)
	if err != nil {
		return wrap("export flows", err)
	}
	const page = 256
	var fnErr error
	for seen := 0; total <= 0 || seen < total; {
		p.limit = page
		if total > 0 {
			p.limit = min(page, total-seen)
		}
		next, err := db.flowPage(ctx, p, func(f *record.Flow) error {
			seen++
			if err := fn(f); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if fnErr != nil {
			return fnErr
		}
		if err != nil {
			return wrap("export flows", err)
		}
		if next == "" {
			return nil
		}
		if p.cur, err = decodeCursor(next); err != nil {
			return wrap("export flows", err)
		}
	}
	return nil
}

// flowPlan is a validated FlowQuery.
type flowPlan struct {
	terms []term // the filters, ANDed
	order int    // index in orderCols
	asc   bool
	limit int
	hash  uint64 // of the filters and order, carried by cursors
	cur   *cursor
}

// A term is one filter of a flowPlan, in two forms: sql, which SQLite may
// answer with an index, and noIndex, the same test with unary + on the
// columns, which it may not (https://sqlite.org/optoverview.html#uplus).
type term struct {
	sql, noIndex string
	args         []any
}

func (p *flowPlan) add(sql, noIndex string, args ...any) {
	p.terms = append(p.terms, term{sql: sql, noIndex: noIndex, args: args})
}

// where returns the terms ANDed and their arguments; the term at index
// (if any: -1 for none) keeps its indexable form, the others do not when
// only is set.
func (p *flowPlan) where(index int, only bool) (string, []any) {
	var conds []string
	var args []any
	for i, t := range p.terms {
		if only && i != index {
			conds = append(conds, t.noIndex)
		} else {
			conds = append(conds, t.sql)
		}
		args = append(args, t.args...)
	}
	return strings.Join(conds, " AND "), args
}

func planFlows(q FlowQuery) (*flowPlan, error) {
	p := &flowPlan{asc: q.Ascending, order: -1}
	if q.Order == "" {
		q.Order = OrderLastSeen
	}
	for i, o := range orderCols {
		if o.order == q.Order {
			p.order = i
		}
	}
	if p.order < 0 {
		return nil, fmt.Errorf("order %q: %w", q.Order, ErrInvalid)
	}
	switch {
	case q.Limit <= 0:
		p.limit = DefaultLimit
	case q.Limit > MaxLimit:
		p.limit = MaxLimit
	default:
		p.limit = q.Limit
	}

	var canon strings.Builder // the filters, normalised, for the cursor hash
	fmt.Fprintf(&canon, "o=%d,%t;", p.order, p.asc)
	if q.IP.IsValid() {
		a := addr16(q.IP)
		p.add("(src_addr = ? OR dst_addr = ?)", "(+src_addr = ? OR +dst_addr = ?)", a, a)
		fmt.Fprintf(&canon, "ip=%x;", a)
	}
	if q.CIDR.IsValid() {
		lo, hi := prefixRange(q.CIDR)
		p.add("(src_addr BETWEEN ? AND ? OR dst_addr BETWEEN ? AND ?)",
			"(+src_addr BETWEEN ? AND ? OR +dst_addr BETWEEN ? AND ?)", lo, hi, lo, hi)
		fmt.Fprintf(&canon, "cidr=%x-%x;", lo, hi)
	}
	if q.Port != 0 {
		if q.Port < 0 || q.Port > 65535 {
			return nil, fmt.Errorf("port %d: %w", q.Port, ErrInvalid)
		}
		p.add("(src_port = ? OR dst_port = ?)", "(+src_port = ? OR +dst_port = ?)", int64(q.Port), int64(q.Port))
		fmt.Fprintf(&canon, "port=%d;", q.Port)
	}
	if q.Proto != "" {
		n, ok := protoNumber(q.Proto)
		if !ok {
			return nil, fmt.Errorf("unknown protocol %q: %w", q.Proto, ErrInvalid)
		}
		p.add("proto_num = ?", "+proto_num = ?", n)
		fmt.Fprintf(&canon, "proto=%d;", n)
	}
	if q.State != "" {
		s := strings.ToUpper(q.State)
		p.add("state = ?", "+state = ?", s)
		fmt.Fprintf(&canon, "state=%q;", s)
	}
	if q.Direction != "" {
		d := strings.ToLower(q.Direction)
		p.add("direction = ?", "+direction = ?", d)
		fmt.Fprintf(&canon, "dir=%q;", d)
	}
	if !q.Since.IsZero() {
		p.add("last_seen >= ?", "+last_seen >= ?", q.Since.UnixNano())
		fmt.Fprintf(&canon, "since=%d;", q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		p.add("first_seen < ?", "+first_seen < ?", q.Until.UnixNano())
		fmt.Fprintf(&canon, "until=%d;", q.Until.UnixNano())
	}
	h := fnv.New64a()
	h.Write([]byte(canon.String()))
	p.hash = h.Sum64()

	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		if c.hash != p.hash {
			return nil, fmt.Errorf("cursor is for another query: %w", ErrBadCursor)
		}
		p.cur = c
	}
	return p, nil
}

// orderedScanBudget is how many rows, in sort order, a filtered page reads
// first, before it estimates which plan is cheaper (see flowPage).
// DB.scanBudget holds it; tests lower it.
const orderedScanBudget = 4096

// maxOrderedScan bounds the rows a filtered page reads in sort order in
// all; scanRounds bounds the windows it reads them in.
const (
	maxOrderedScan = 65536
	scanRounds     = 4
)

// indexCostRatio is what reading one match through a filter's index and
// sorting it costs, in rows of the ordered scan: measured on a million
// flows, about 3 µs against 0.8 µs.
const indexCostRatio = 4

// flowPage runs one page of p, calling fn per flow, and returns the cursor
// of the next page. The page is one short read transaction.
//
// A filtered page has two plans, and SQLite cannot tell which is cheap: it
// knows how many rows a filter matches on average, not that the watched
// container's own address is in every flow while another address is in
// three. Reading the sort index in order and filtering stops after limit
// matches, which is cheap for a common filter and reads the whole table for
// a rare one; reading the filter's index and sorting the matches is cheap
// for a rare filter and sorts most of the table for a common one. So the
// page first reads scanBudget rows in order. If they hold fewer than
// limit+1 matches and more rows remain, the matches found predict how many
// more rows the ordered scan needs, and the filter's index says how many
// matches there are (counted up to probeCap); the page goes on with the
// ordered scan (in up to scanRounds windows, maxOrderedScan rows in all)
// when that is cheaper than reading and sorting the matches
// (indexCostRatio), and reads the matches otherwise. A page costs about
// scanBudget rows plus the cheaper of the two, never the whole table.
func (db *DB) flowPage(ctx context.Context, p *flowPlan, fn func(*record.Flow) error) (string, error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	col, idx := orderCols[p.order].col, orderCols[p.order].index
	dir, cmp := "DESC", "<"
	if p.asc {
		dir, cmp = "ASC", ">"
	}
	var cur string // the cursor condition, on the sort index
	var curArgs []any
	if p.cur != nil {
		// Row values: SQLite seeks the (col, rid) index to the cursor.
		cur = "(" + col + ", rid) " + cmp + " (?, ?)"
		curArgs = []any{p.cur.key, p.cur.rid}
	}
	order := fmt.Sprintf(" ORDER BY %s %s, rid %s", col, dir, dir)
	limit := fmt.Sprintf(" LIMIT %d", p.limit+1)

	var page []pageRow
	if len(p.terms) == 0 {
		q := "SELECT rid, " + col + ", " + flowCols + " FROM flows INDEXED BY " + idx + whereClause(cur) + order + limit
		page, err = queryPage(ctx, tx, q, curArgs)
	} else {
		page, err = db.filteredPage(ctx, tx, p, col, idx, cmp, order, cur, curArgs)
	}
	if err != nil {
		return "", err
	}
	if err := tx.Commit(); err != nil {
		return "", err
	}
	for i := range page[:min(len(page), p.limit)] {
		if err := fn(&page[i].f); err != nil {
			return "", err
		}
	}
	if len(page) <= p.limit {
		return "", nil
	}
	last := page[p.limit-1]
	next := cursor{order: byte(p.order), asc: p.asc, hash: p.hash, key: last.key, rid: last.rid}
	return next.encode(), nil
}

// filteredPage reads up to limit+1 rows of a filtered page (see flowPage).
func (db *DB) filteredPage(ctx context.Context, tx *sql.Tx, p *flowPlan, col, idx, cmp, order, cur string, curArgs []any) ([]pageRow, error) {
	filters, fargs := p.where(-1, false)
	var page []pageRow
	from, fromArgs := cur, curArgs // where the next window starts
	budget, scanned, counted := db.scanBudget, 0, -1
	for round := 0; round < scanRounds; round++ {
		need := p.limit + 1 - len(page)
		q := "SELECT rid, " + col + ", " + flowCols + " FROM (SELECT * FROM flows INDEXED BY " + idx +
			whereClause(from) + order + fmt.Sprintf(" LIMIT %d)", budget) + whereClause(filters) + order + fmt.Sprintf(" LIMIT %d", need)
		rows, err := queryPage(ctx, tx, q, append(fromArgs[:len(fromArgs):len(fromArgs)], fargs...))
		if err != nil {
			return nil, err
		}
		page = append(page, rows...)
		if len(page) > p.limit {
			return page, nil
		}
		// The window's last row, from the index alone: none means the
		// window reached the end of the table, and the page is complete.
		var key, rid int64
		err = tx.QueryRowContext(ctx, "SELECT "+col+", rid FROM flows INDEXED BY "+idx+whereClause(from)+order+
			fmt.Sprintf(" LIMIT 1 OFFSET %d", budget-1), fromArgs...).Scan(&key, &rid)
		if err == sql.ErrNoRows {
			return page, nil
		}
		if err != nil {
			return nil, err
		}
		scanned += budget
		if len(page) == 0 {
			break // rare: read the matches
		}
		// The matches so far predict the rows still to scan.
		more := (p.limit + 1 - len(page)) * scanned / len(page)
		if scanned+more > maxOrderedScan {
			break
		}
		if counted < 0 {
			if _, counted, err = rarestTerm(ctx, tx, p); err != nil {
				return nil, err
			}
		}
		if more >= indexCostRatio*counted {
			break // reading the matches is cheaper
		}
		budget = min(more+more/4+64, maxOrderedScan-scanned)
		from = "(" + col + ", rid) " + cmp + " (?, ?)"
		fromArgs = []any{key, rid}
	}

	// Read the matches of the rarest term through its index and sort
	// them. The unary + keeps SQLite off the sort index and the other
	// terms' indexes.
	best, _, err := rarestTerm(ctx, tx, p)
	if err != nil {
		return nil, err
	}
	fcur, args := p.where(best, true)
	if p.cur != nil {
		fcur += " AND (+" + col + ", +rid) " + cmp + " (?, ?)"
		args = append(args, curArgs...)
	}
	dir := "DESC"
	if p.asc {
		dir = "ASC"
	}
	q := "SELECT rid, " + col + ", " + flowCols + " FROM flows WHERE " + fcur +
		fmt.Sprintf(" ORDER BY +%s %s, +rid %s LIMIT %d", col, dir, dir, p.limit+1)
	return queryPage(ctx, tx, q, args)
}

// pageRow is a flow with its sort key and rid, for the cursor.
type pageRow struct {
	rid, key int64
	f        record.Flow
}

// queryPage reads the rows of a page query (rid, key, flowCols…).
func queryPage(ctx context.Context, tx *sql.Tx, q string, args []any) ([]pageRow, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var page []pageRow
	for rows.Next() {
		var r pageRow
		if err := scanFlow(rows, &r.f, &r.rid, &r.key); err != nil {
			return nil, err
		}
		page = append(page, r)
	}
	return page, rows.Err()
}

// whereClause returns " WHERE cond", or "" for an empty cond.
func whereClause(cond string) string {
	if cond == "" {
		return ""
	}
	return " WHERE " + cond
}

// probeCap bounds the rows rarestTerm counts per term.
const probeCap = 16384

// rarestTerm returns the index of the term of p that matches the fewest
// flows and that count, counting each through its own index up to probeCap
// (and up to the best count so far). SQLite's statistics cannot be trusted
// for this: they are averages (sqlite_stat1) or samples (sqlite_stat4) of
// the first analysis_limit rows, and a filter's cost here depends on the
// value asked for (the container's own address against a stranger's).
func rarestTerm(ctx context.Context, tx *sql.Tx, p *flowPlan) (best, count int, err error) {
	best, count = 0, probeCap
	for i, t := range p.terms {
		var n int
		if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM (SELECT 1 FROM flows WHERE %s LIMIT %d)",
			t.sql, count), t.args...).Scan(&n); err != nil {
			return 0, 0, err
		}
		if n < count {
			best, count = i, n
		}
		if n == 0 {
			break
		}
	}
	return best, count, nil
}

// cursor is the position after the last row of a page.
type cursor struct {
	order byte
	asc   bool
	hash  uint64
	key   int64 // sort column value of the last row
	rid   int64 // its rid
}

const cursorVersion = 1

func (c cursor) encode() string {
	b := make([]byte, 0, 3+8+2*binary.MaxVarintLen64)
	var asc byte
	if c.asc {
		asc = 1
	}
	b = append(b, cursorVersion, c.order, asc)
	b = binary.BigEndian.AppendUint64(b, c.hash)
	b = binary.AppendVarint(b, c.key)
	b = binary.AppendVarint(b, c.rid)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 3+8 || b[0] != cursorVersion || int(b[1]) >= len(orderCols) || b[2] > 1 {
		return nil, fmt.Errorf("malformed cursor: %w", ErrBadCursor)
	}
	c := &cursor{order: b[1], asc: b[2] == 1, hash: binary.BigEndian.Uint64(b[3:11])}
	b = b[11:]
	var n int
	if c.key, n = binary.Varint(b); n <= 0 {
		return nil, fmt.Errorf("malformed cursor: %w", ErrBadCursor)
	}
	b = b[n:]
	if c.rid, n = binary.Varint(b); n <= 0 || n != len(b) {
		return nil, fmt.Errorf("malformed cursor: %w", ErrBadCursor)
	}
	return c, nil
}

// addr16 is the 16-byte form of a, the form of the src_addr and dst_addr
// columns.
func addr16(a netip.Addr) []byte {
	b := a.As16()
	return b[:]
}

// prefixRange returns the first and last 16-byte addresses of p; an IPv4
// prefix is taken as its IPv4-mapped IPv6 prefix (bits + 96).
func prefixRange(p netip.Prefix) (lo, hi []byte) {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	l := p.Addr().As16()
	h := l
	for i := bits; i < 128; i++ {
		h[i/8] |= 0x80 >> (i % 8)
	}
	return l[:], h[:]
}

// History returns the newest sampled packet records first (by capture time),
// at most limit (zero: DefaultLimit; capped at MaxLimit): the original
// /api/history.
func (db *DB) History(ctx context.Context, limit int) ([]record.PacketSample, error) {
	limit = clampLimit(limit, DefaultLimit, MaxLimit)
	rows, err := db.r.QueryContext(ctx, `SELECT ts, src_ip, dst_ip, src_port, dst_port, protocol, length, flow_id
		FROM packets ORDER BY ts DESC, rid DESC LIMIT ?`, limit)
	if err != nil {
		return nil, wrap("read history", err)
	}
	defer rows.Close()
	out := make([]record.PacketSample, 0, min(limit, 64))
	for rows.Next() {
		var s record.PacketSample
		var sp, dp, l int64
		if err := rows.Scan(&s.Timestamp, &s.SrcIP, &s.DstIP, &sp, &dp, &s.Protocol, &l, &s.FlowID); err != nil {
			return nil, wrap("read history", err)
		}
		s.SrcPort, s.DstPort, s.Length = uint16(sp), uint16(dp), uint32(l)
		out = append(out, s)
	}
	return out, wrap("read history", rows.Err())
}

func clampLimit(n, def, max int) int {
	switch {
	case n <= 0:
		return def
	case n > max:
		return max
	}
	return n
}

// WindowQuery selects per-window counters.
type WindowQuery struct {
	// FlowID selects one flow's windows; empty sums every flow's windows
	// per window start (the traffic of the whole capture per window).
	FlowID string
	// Since and Until keep windows that start in [Since, Until); zero:
	// unbounded.
	Since, Until time.Time
	// Limit bounds the windows returned, earliest first (zero:
	// DefaultSeriesLimit; capped at MaxSeriesLimit).
	Limit int
}

// Window is the traffic of one aggregation window: of one flow, or of every
// flow with traffic in it.
type Window struct {
	Start time.Time `json:"start"`
	// WidthSeconds is the window's width (Options.AggregationWindow when it
	// was written).
	WidthSeconds int64 `json:"width_seconds"`
	// Flows is the number of flows with traffic in the window.
	Flows           int64  `json:"flows"`
	PacketsSent     uint64 `json:"packets_sent"`
	BytesSent       uint64 `json:"bytes_sent"`
	PacketsReceived uint64 `json:"packets_received"`
	BytesReceived   uint64 `json:"bytes_received"`
}

// WindowSeries returns the windows q selects, earliest first. It is empty
// when Options.AggregationWindow is zero (no windows are written).
func (db *DB) WindowSeries(ctx context.Context, q WindowQuery) ([]Window, error) {
	limit := clampLimit(q.Limit, DefaultSeriesLimit, MaxSeriesLimit)
	since, until := int64(-1<<62), int64(1<<62)
	if !q.Since.IsZero() {
		since = q.Since.Unix()
		if q.Since.Nanosecond() > 0 {
			since++ // start is whole seconds: the first at or after Since
		}
	}
	if !q.Until.IsZero() {
		until = q.Until.Unix()
		if q.Until.Nanosecond() > 0 {
			until++
		}
	}
	var rows *sql.Rows
	var err error
	if q.FlowID != "" {
		rows, err = db.r.QueryContext(ctx, `SELECT w.start, w.width, 1, w.packets_sent, w.bytes_sent,
			w.packets_received, w.bytes_received
			FROM flow_windows w JOIN flows f ON f.rid = w.flow_rid
			WHERE f.id = ? AND w.start >= ? AND w.start < ? ORDER BY w.start LIMIT ?`,
			q.FlowID, since, until, limit)
	} else {
		rows, err = db.r.QueryContext(ctx, `SELECT start, MAX(width), COUNT(*), SUM(packets_sent), SUM(bytes_sent),
			SUM(packets_received), SUM(bytes_received)
			FROM flow_windows WHERE start >= ? AND start < ? GROUP BY start ORDER BY start LIMIT ?`,
			since, until, limit)
	}
	if err != nil {
		return nil, wrap("read windows", err)
	}
	defer rows.Close()
	var out []Window
	for rows.Next() {
		var w Window
		var start, ps, bs, pr, br int64
		if err := rows.Scan(&start, &w.WidthSeconds, &w.Flows, &ps, &bs, &pr, &br); err != nil {
			return nil, wrap("read windows", err)
		}
		w.Start = time.Unix(start, 0).UTC()
		w.PacketsSent, w.BytesSent, w.PacketsReceived, w.BytesReceived = uint64(ps), uint64(bs), uint64(pr), uint64(br)
		out = append(out, w)
	}
	return out, wrap("read windows", rows.Err())
}

// StatsPoint is the cumulative capture statistics of one capturer instance
// at one time (the last batch of that second).
type StatsPoint struct {
	At time.Time `json:"at"`
	// CapturerID is the instance id; empty if its capturer row was
	// deleted by retention.
	CapturerID string              `json:"capturer_id"`
	Stats      record.CaptureStats `json:"stats"`
	Dropped    DropStats           `json:"dropped"`
}

// StatsSeries returns the capture statistics received in [since, until)
// (zero: unbounded), earliest first, at most limit points (zero:
// DefaultSeriesLimit; capped at MaxSeriesLimit).
func (db *DB) StatsSeries(ctx context.Context, since, until time.Time, limit int) ([]StatsPoint, error) {
	limit = clampLimit(limit, DefaultSeriesLimit, MaxSeriesLimit)
	lo, hi := int64(-1<<62), int64(1<<62)
	if !since.IsZero() {
		lo = since.Unix()
		if since.Nanosecond() > 0 {
			lo++
		}
	}
	if !until.IsZero() {
		hi = until.Unix()
		if until.Nanosecond() > 0 {
			hi++
		}
	}
	rows, err := db.r.QueryContext(ctx, `SELECT s.ts, COALESCE(c.instance_id, ''), s.packets, s.bytes,
		s.kernel_received, s.kernel_drops, s.flow_packets, s.non_ip, s.decode_errors, s.filtered,
		s.flows, s.active_flows, s.evictions, s.fragments_pending, s.samples_dropped,
		s.batches_coalesced, s.updates_dropped, s.ended_dropped, s.ended_packets, s.ended_bytes
		FROM capture_stats s LEFT JOIN capturers c ON c.rid = s.capturer_id
		WHERE s.ts >= ? AND s.ts < ? ORDER BY s.ts, s.capturer_id LIMIT ?`, lo, hi, limit)
	if err != nil {
		return nil, wrap("read stats", err)
	}
	defer rows.Close()
	var out []StatsPoint
	for rows.Next() {
		var p StatsPoint
		var ts int64
		var de string
		var v [18]int64
		if err := rows.Scan(&ts, &p.CapturerID, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &de,
			&v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &v[16]); err != nil {
			return nil, wrap("read stats", err)
		}
		p.At = time.Unix(ts, 0).UTC()
		s := &p.Stats
		s.Packets, s.Bytes, s.KernelReceived, s.KernelDrops = uint64(v[0]), uint64(v[1]), uint64(v[2]), uint64(v[3])
		s.FlowPackets, s.NonIP, s.Filtered, s.Flows = uint64(v[4]), uint64(v[5]), uint64(v[6]), uint64(v[7])
		s.ActiveFlows, s.Evictions, s.FragmentsPending = uint64(v[8]), uint64(v[9]), uint64(v[10])
		d := &p.Dropped
		d.SamplesDropped, d.BatchesCoalesced, d.UpdatesDropped = uint64(v[11]), uint64(v[12]), uint64(v[13])
		d.EndedDropped, d.EndedPackets, d.EndedBytes = uint64(v[14]), uint64(v[15]), uint64(v[16])
		if de != "{}" && de != "" {
			if err := json.Unmarshal([]byte(de), &s.DecodeErrors); err != nil {
				return nil, wrap("read stats", fmt.Errorf("decode_errors: %w", err))
			}
		}
		out = append(out, p)
	}
	return out, wrap("read stats", rows.Err())
}

// maxCapturers bounds Capturers.
const maxCapturers = 1000

// Capturers returns the capturer instances stored, most recently seen
// first, at most 1000.
func (db *DB) Capturers(ctx context.Context) ([]Capturer, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT c.instance_id, c.hostname, c.software, c.interface,
		c.link_type, c.filter, c.start_time, c.first_seen, c.last_seen, COALESCE(a.last_seq, 0)
		FROM capturers c LEFT JOIN applied_batches a ON a.instance_id = c.instance_id
		ORDER BY c.last_seen DESC LIMIT ?`, maxCapturers)
	if err != nil {
		return nil, wrap("read capturers", err)
	}
	defer rows.Close()
	var out []Capturer
	for rows.Next() {
		var c Capturer
		var lt, start, first, last, seq int64
		if err := rows.Scan(&c.InstanceID, &c.Hostname, &c.Software, &c.Interface, &lt, &c.Filter,
			&start, &first, &last, &seq); err != nil {
			return nil, wrap("read capturers", err)
		}
		c.LinkType, c.LastSeq = uint16(lt), uint64(seq)
		c.StartTime, c.FirstSeen, c.LastSeen = fromUnixNano(start), fromUnixNano(first), fromUnixNano(last)
		out = append(out, c)
	}
	return out, wrap("read capturers", rows.Err())
}
