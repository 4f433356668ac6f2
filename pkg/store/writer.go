package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// A batch is written through the SQLite driver's own connection
// (database/sql's Conn.Raw) rather than through database/sql: database/sql
// converts the arguments of every statement into a new slice and wraps
// every result, about 20 allocations and 1 KiB per flow record, which at
// tens of thousands of records per second cost the API server more in GC
// (its heap is a few MiB) than SQLite's own work. The batchWriter reuses
// its argument slots and buffers from batch to batch.
//
// Flow records are applied a chunk at a time: one statement reads the
// stored rows of the chunk's flows (rid, totals, labels, text columns),
// then each record updates its row by rid, or inserts it. Reading first
// costs one lookup of the id index per record, which the update by rid
// saves; and it tells the writer
//   - what each record adds to the traffic totals (its counters' growth
//     over the stored row), without a trigger on flows (a trigger makes
//     every flow write keep a statement journal and run a sub-program:
//     about 30 % more per record, measured);
//   - which columns the record changes: most change only the counters and
//     last_seen, an update of integers only (which the driver binds
//     without allocating), and one that leaves state out of its SET list
//     does not rewrite the flows_state index entry (about 10 % of an
//     update).
//
// The updates are one statement per record on purpose: SQLite gives a
// statement that changes many rows (UPDATE … FROM json_each(?), tried) a
// statement journal holding the original of every page it changes, about
// 4 MiB for 256 records, which cost more CPU than the statements it saves
// and 2-3 MiB of the API server's resident memory.

// rawConn is what a batch needs of the driver's connection: the
// database/sql/driver interfaces that modernc.org/sqlite implements.
type rawConn interface {
	driver.ConnPrepareContext
	driver.ConnBeginTx
}

// rawStmt is a prepared statement of the driver.
type rawStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// stmtID names the statements of a batch.
type stmtID int

const (
	sAdvanceSeq stmtID = iota
	sUpsertCapturer
	sReadFlows
	sReadRetired
	sDeleteRetired
	sUpdateCounters
	sUpdateFlowText
	sUpdateFlowState
	sInsertFlow
	sInsertSample
	sInsertSamples
	sUpsertStats
	sUpsertTraffic
	sPageCount
	numStmts
)

// flowChunk is the most flow records one read of stored rows covers.
const flowChunk = 256

// samplesPerStmt is the number of rows of one multi-row sample insert: fewer
// statements, 8 × 64 = 512 parameters (SQLite allows 32766).
const samplesPerStmt = 64

// maxArgs is the most parameters a batch statement has.
const maxArgs = 8 * samplesPerStmt

// The statements of a batch. The hot ones use plain ? parameters: the
// driver reads the name of every parameter of every execution, and
// allocates for a named one.
var batchSQL = func() [numStmts]string {
	const sampleRow = "(?,?,?,?,?,?,?,?)"
	const sampleInsert = "INSERT INTO packets (ts, src_ip, dst_ip, src_port, dst_port, protocol, length, flow_id) VALUES "
	// The updates set only the columns a flow's later records change
	// (SQLite rewrites the index entries of every column in the SET
	// list): the 5-tuple, first_seen, vlan, community id and direction
	// are fixed by the flow's id (a hash of its key and first packet),
	// the text columns change a few times in a flow's life, the state
	// (indexed) fewer.
	const counters = `UPDATE flows SET capturer_id = ?, last_seen = ?,
	packets_sent = ?, bytes_sent = ?, packets_received = ?, bytes_received = ?, packets = ?, bytes = ?`
	const text = counters + `, tcp_flags = ?, history = ?, end_reason = ?`
	return [numStmts]string{
		sAdvanceSeq: `INSERT INTO applied_batches (instance_id, last_seq, applied_at) VALUES (?, ?, ?)
			ON CONFLICT (instance_id) DO UPDATE SET last_seq = excluded.last_seq, applied_at = excluded.applied_at
			WHERE excluded.last_seq > applied_batches.last_seq`,
		sUpsertCapturer: `INSERT INTO capturers (instance_id, hostname, software, interface, link_type, filter,
			start_time, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
			ON CONFLICT (instance_id) DO UPDATE SET hostname = excluded.hostname, software = excluded.software,
			interface = excluded.interface, link_type = excluded.link_type, filter = excluded.filter,
			start_time = excluded.start_time, last_seen = excluded.last_seen
			RETURNING rid`,
		// ?1 is a JSON array of flow ids; key is the index in it. CROSS
		// JOIN keeps the array the outer loop (one id lookup each).
		sReadFlows: `SELECT j.key, f.rid, f.packets, f.bytes,
			f.proto_num * 4 + CASE f.direction WHEN 'inbound' THEN 1 WHEN 'outbound' THEN 2 WHEN 'internal' THEN 3 ELSE 0 END,
			f.tcp_flags, f.history, f.state, f.end_reason
			FROM json_each(?) AS j CROSS JOIN flows AS f ON f.id = j.value`,
		sReadRetired: `SELECT j.key, r.packets, r.bytes
			FROM json_each(?) AS j CROSS JOIN flows_retired AS r ON r.id = j.value`,
		sDeleteRetired:   `DELETE FROM flows_retired WHERE id = ?`,
		sUpdateCounters:  counters + ` WHERE rid = ?`,
		sUpdateFlowText:  text + ` WHERE rid = ?`,
		sUpdateFlowState: text + `, state = ? WHERE rid = ?`,
		sInsertFlow: `INSERT INTO flows (id, capturer_id, community_id, proto, proto_num,
			src_ip, src_addr, src_port, dst_ip, dst_addr, dst_port, vlan, first_seen, last_seen,
			packets_sent, bytes_sent, packets_received, bytes_received, packets, bytes,
			tcp_flags, history, state, direction, end_reason)
			VALUES (?,?,?,?,?, ?,?,?,?,?,?,?,?,?, ?,?,?,?,?,?, ?,?,?,?,?)`,
		sInsertSample:  sampleInsert + sampleRow,
		sInsertSamples: sampleInsert + strings.Repeat(sampleRow+",", samplesPerStmt-1) + sampleRow,
		sUpsertStats: `INSERT INTO capture_stats (ts, capturer_id, packets, bytes, kernel_received,
			kernel_drops, flow_packets, non_ip, decode_errors, filtered, flows, active_flows, evictions,
			fragments_pending, samples_dropped, batches_coalesced, updates_dropped, ended_dropped,
			ended_packets, ended_bytes) VALUES (?,?,?,?,?, ?,?,?,?,?, ?,?,?,?,?, ?,?,?,?,?)
			ON CONFLICT (ts, capturer_id) DO UPDATE SET packets = excluded.packets, bytes = excluded.bytes,
			kernel_received = excluded.kernel_received, kernel_drops = excluded.kernel_drops,
			flow_packets = excluded.flow_packets, non_ip = excluded.non_ip,
			decode_errors = excluded.decode_errors, filtered = excluded.filtered, flows = excluded.flows,
			active_flows = excluded.active_flows, evictions = excluded.evictions,
			fragments_pending = excluded.fragments_pending, samples_dropped = excluded.samples_dropped,
			batches_coalesced = excluded.batches_coalesced, updates_dropped = excluded.updates_dropped,
			ended_dropped = excluded.ended_dropped, ended_packets = excluded.ended_packets,
			ended_bytes = excluded.ended_bytes`,
		sUpsertTraffic: `INSERT INTO traffic (proto, direction, packets, bytes) VALUES (?, ?, ?, ?)
			ON CONFLICT (proto, direction) DO UPDATE SET packets = excluded.packets, bytes = excluded.bytes`,
		sPageCount: "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())",
	}
}()

// checkBatchSQL prepares every batch statement once on w and closes it, so
// that Open reports a statement the schema does not fit.
func checkBatchSQL(ctx context.Context, w *sql.DB) error {
	for _, q := range batchSQL {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %.40q…: %w", q, err)
		}
		st.Close()
	}
	return nil
}

// storedRow is what the writer knows of a chunk's record before writing it.
type storedRow struct {
	found          bool // a flows row has the record's id
	retired        bool // else, flows_retired has
	rid            int64
	packets, bytes int64 // the stored (or retired) totals
	label          int   // trafficLabel of the stored row
	// The stored text columns.
	tcpFlags, history, state, endReason string
}

// batchWriter writes batches on the writer's driver connection. It is kept
// by the DB and reused; mu is held while one batch uses it (the writer has
// one connection, so batches take turns anyway).
type batchWriter struct {
	mu    sync.Mutex
	ctx   context.Context // never cancelled: see applyBatch
	conn  rawConn
	stmts [numStmts]rawStmt // prepared on first use in a batch

	slots []driver.NamedValue // argument slots, ordinals 1…maxArgs
	dest  []driver.Value

	recs    []*record.Flow
	seen    map[string]struct{}
	json    []byte // a chunk's ids
	rows    [flowChunk]storedRow
	missing []int

	traffic trafficDelta
}

func newBatchWriter() *batchWriter {
	w := &batchWriter{
		slots: make([]driver.NamedValue, maxArgs),
		dest:  make([]driver.Value, 16),
		seen:  make(map[string]struct{}, flowChunk),
	}
	for i := range w.slots {
		w.slots[i].Ordinal = i + 1
	}
	return w
}

// start readies w for one batch on conn.
func (w *batchWriter) start(ctx context.Context, conn rawConn) {
	w.ctx = context.WithoutCancel(ctx)
	w.conn = conn
	w.traffic.reset()
}

// finish closes the batch's statements and drops its references (to the
// batch's records and strings) so that the garbage collector can have them.
func (w *batchWriter) finish() {
	for i, st := range w.stmts {
		if st != nil {
			st.Close()
			w.stmts[i] = nil
		}
	}
	w.conn, w.ctx = nil, nil
	clear(w.recs)
	w.recs = w.recs[:0]
	for i := range w.slots {
		w.slots[i].Value = nil
	}
	clear(w.dest)
	clear(w.seen)
	for i := range w.rows {
		w.rows[i] = storedRow{}
	}
}

// args returns the first n argument slots.
func (w *batchWriter) args(n int) []driver.NamedValue { return w.slots[:n] }

func (w *batchWriter) stmt(id stmtID) (rawStmt, error) {
	if st := w.stmts[id]; st != nil {
		return st, nil
	}
	ds, err := w.conn.PrepareContext(w.ctx, batchSQL[id])
	if err != nil {
		return nil, err
	}
	st, ok := ds.(rawStmt)
	if !ok {
		ds.Close()
		return nil, fmt.Errorf("driver statement %T cannot execute with a context", ds)
	}
	w.stmts[id] = st
	return st, nil
}

func (w *batchWriter) exec(id stmtID, args []driver.NamedValue) (driver.Result, error) {
	st, err := w.stmt(id)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(w.ctx, args)
}

func (w *batchWriter) query(id stmtID, args []driver.NamedValue) (driver.Rows, error) {
	st, err := w.stmt(id)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(w.ctx, args)
}

// queryInt runs a query of one integer in one row.
func (w *batchWriter) queryInt(id stmtID, args []driver.NamedValue) (int64, error) {
	rows, err := w.query(id, args)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := w.dest[:1]
	if err := rows.Next(dest); err != nil {
		if err == io.EOF {
			return 0, errors.New("no row")
		}
		return 0, err
	}
	return asInt64(dest[0]), nil
}

// asInt64 reads an integer column (0 for NULL).
func asInt64(v driver.Value) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return 0
}

// applyFlows writes b's flow records: Flows, except those superseded by a
// final record in Ended, then Ended, in order.
func (w *batchWriter) applyFlows(done context.Context, capRID int64, b *Batch) error {
	var ended map[string]struct{}
	if len(b.Ended) > 0 && len(b.Flows) > 0 {
		ended = make(map[string]struct{}, len(b.Ended))
		for i := range b.Ended {
			ended[b.Ended[i].ID] = struct{}{}
		}
	}
	recs := w.recs[:0]
	for i := range b.Flows {
		if _, ok := ended[b.Flows[i].ID]; !ok {
			recs = append(recs, &b.Flows[i])
		}
	}
	for i := range b.Ended {
		recs = append(recs, &b.Ended[i])
	}
	w.recs = recs
	capV := driver.Value(capRID)
	for len(recs) > 0 {
		if done.Err() != nil {
			return context.Cause(done)
		}
		n := w.chunk(recs)
		if err := w.applyChunk(capV, recs[:n]); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

// chunk returns how many of recs the next chunk takes: at most flowChunk,
// and none whose id is already in the chunk, so that a later record of a
// flow is read after the earlier one is written.
func (w *batchWriter) chunk(recs []*record.Flow) int {
	clear(w.seen)
	n := 0
	for n < len(recs) && n < flowChunk {
		id := recs[n].ID
		if _, dup := w.seen[id]; dup {
			break
		}
		w.seen[id] = struct{}{}
		n++
	}
	return n
}

// appendIDs appends a JSON array of the ids of recs[i] for each i in idx
// (every record when idx is nil).
func appendIDs(b []byte, recs []*record.Flow, idx []int) []byte {
	b = append(b, '[')
	n := len(recs)
	if idx != nil {
		n = len(idx)
	}
	for k := range n {
		i := k
		if idx != nil {
			i = idx[k]
		}
		if k > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, recs[i].ID)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string. Bytes that are not valid
// UTF-8 pass through unchanged, as SQLite's JSON functions take and return
// them, so the id compares equal to the stored one.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// applyChunk writes recs, whose ids are distinct.
func (w *batchWriter) applyChunk(capV driver.Value, recs []*record.Flow) error {
	rows := w.rows[:len(recs)]
	for i := range rows {
		rows[i] = storedRow{}
	}
	w.json = appendIDs(w.json[:0], recs, nil)
	a := w.args(1)
	a[0].Value = string(w.json)
	if err := w.readRows(sReadFlows, a, 9, func(d []driver.Value) {
		if k := asInt64(d[0]); k >= 0 && k < int64(len(rows)) {
			r := &rows[k]
			r.found, r.rid, r.packets, r.bytes = true, asInt64(d[1]), asInt64(d[2]), asInt64(d[3])
			r.label = int(asInt64(d[4])) % numLabels
			r.tcpFlags, _ = d[5].(string)
			r.history, _ = d[6].(string)
			r.state, _ = d[7].(string)
			r.endReason, _ = d[8].(string)
		}
	}); err != nil {
		return fmt.Errorf("read stored flows: %w", err)
	}

	// Flows not stored may be flows that retention deleted while they
	// were active: their counters were counted up to then.
	w.missing = w.missing[:0]
	for i := range rows {
		if !rows[i].found {
			w.missing = append(w.missing, i)
		}
	}
	if len(w.missing) > 0 {
		w.json = appendIDs(w.json[:0], recs, w.missing)
		a[0].Value = string(w.json)
		if err := w.readRows(sReadRetired, a, 3, func(d []driver.Value) {
			if k := asInt64(d[0]); k >= 0 && k < int64(len(w.missing)) {
				r := &rows[w.missing[k]]
				r.retired, r.packets, r.bytes = true, asInt64(d[1]), asInt64(d[2])
			}
		}); err != nil {
			return fmt.Errorf("read retired flows: %w", err)
		}
	}

	for i, f := range recs {
		if err := w.writeFlow(capV, f, &rows[i]); err != nil {
			return err
		}
	}
	return nil
}

// readRows runs a query of n columns and calls fn with each row's values.
func (w *batchWriter) readRows(id stmtID, args []driver.NamedValue, n int, fn func([]driver.Value)) error {
	rows, err := w.query(id, args)
	if err != nil {
		return err
	}
	dest := w.dest[:n]
	for {
		if err := rows.Next(dest); err != nil {
			rows.Close()
			if err == io.EOF {
				return nil
			}
			return err
		}
		fn(dest)
	}
}

// writeFlow updates the stored row of f, or inserts it, and counts what it
// adds to the traffic.
func (w *batchWriter) writeFlow(capV driver.Value, f *record.Flow, r *storedRow) error {
	ps, bs, pr, br := i64(f.PacketsSent), i64(f.BytesSent), i64(f.PacketsReceived), i64(f.BytesReceived)
	packets, bytes := sat(ps, pr), sat(bs, br)
	last := unixNano(f.LastSeen.Time)
	if r.found {
		a := w.args(13)
		a[0].Value, a[1].Value = capV, last
		a[2].Value, a[3].Value, a[4].Value, a[5].Value, a[6].Value, a[7].Value = ps, bs, pr, br, packets, bytes
		id, n := sUpdateCounters, 9
		switch {
		case f.State != r.state:
			id, n = sUpdateFlowState, 13
		case f.TCPFlags != r.tcpFlags || f.History != r.history || f.EndReason != r.endReason:
			id, n = sUpdateFlowText, 12
		}
		if n > 9 {
			a[8].Value, a[9].Value, a[10].Value = f.TCPFlags, f.History, f.EndReason
		}
		if n == 13 {
			a[11].Value = f.State
		}
		a[n-1].Value = r.rid
		if _, err := w.exec(id, a[:n]); err != nil {
			return fmt.Errorf("update flow %s: %w", f.ID, err)
		}
		w.traffic.add(r.label, r.packets, r.bytes, packets, bytes)
		return nil
	}

	a := w.args(25)
	vals := [...]driver.Value{f.ID, capV, f.CommunityID, f.Proto, int64(f.ProtoNum),
		f.SrcIP, blobOrNil(addrBlob(f.SrcIP)), int64(f.SrcPort), f.DstIP, blobOrNil(addrBlob(f.DstIP)),
		int64(f.DstPort), int64(f.VLAN), unixNano(f.FirstSeen.Time), last, ps, bs, pr, br, packets, bytes,
		f.TCPFlags, f.History, f.State, f.Direction, f.EndReason}
	for i := range vals {
		a[i].Value = vals[i]
	}
	if _, err := w.exec(sInsertFlow, a); err != nil {
		return fmt.Errorf("insert flow %s: %w", f.ID, err)
	}
	var oldP, oldB int64
	if r.retired {
		// Counted up to its retirement: count what it grew by since.
		a = w.args(1)
		a[0].Value = f.ID
		if _, err := w.exec(sDeleteRetired, a); err != nil {
			return fmt.Errorf("delete retired flow %s: %w", f.ID, err)
		}
		oldP, oldB = r.packets, r.bytes
	}
	w.traffic.add(trafficLabel(f.ProtoNum, directionCode(f.Direction)), oldP, oldB, packets, bytes)
	return nil
}

// blobOrNil makes a nil slice a NULL (a nil []byte in an interface is not
// a nil interface).
func blobOrNil(b []byte) driver.Value {
	if b == nil {
		return nil
	}
	return b
}

func (w *batchWriter) insertSamples(ss []record.PacketSample) error {
	for len(ss) > 0 {
		id, n := sInsertSample, 1
		if len(ss) >= samplesPerStmt {
			id, n = sInsertSamples, samplesPerStmt
		}
		a := w.args(8 * n)
		for i := range ss[:n] {
			s, v := &ss[i], a[8*i:8*i+8]
			v[0].Value, v[1].Value, v[2].Value, v[3].Value = s.Timestamp, s.SrcIP, s.DstIP, int64(s.SrcPort)
			v[4].Value, v[5].Value, v[6].Value, v[7].Value = int64(s.DstPort), s.Protocol, int64(s.Length), s.FlowID
		}
		if _, err := w.exec(id, a); err != nil {
			return fmt.Errorf("insert samples: %w", err)
		}
		ss = ss[n:]
	}
	return nil
}

func (w *batchWriter) upsertStats(capRID int64, now time.Time, s *record.CaptureStats, d *DropStats) error {
	de := []byte("{}")
	if len(s.DecodeErrors) > 0 {
		var err error
		if de, err = json.Marshal(s.DecodeErrors); err != nil {
			return fmt.Errorf("encode decode_errors: %w", err)
		}
	}
	a := w.args(20)
	vals := [...]driver.Value{now.Unix(), capRID,
		i64(s.Packets), i64(s.Bytes), i64(s.KernelReceived), i64(s.KernelDrops),
		i64(s.FlowPackets), i64(s.NonIP), string(de), i64(s.Filtered), i64(s.Flows),
		i64(s.ActiveFlows), i64(s.Evictions), i64(s.FragmentsPending),
		i64(d.SamplesDropped), i64(d.BatchesCoalesced), i64(d.UpdatesDropped),
		i64(d.EndedDropped), i64(d.EndedPackets), i64(d.EndedBytes)}
	for i := range vals {
		a[i].Value = vals[i]
	}
	if _, err := w.exec(sUpsertStats, a); err != nil {
		return fmt.Errorf("upsert capture stats: %w", err)
	}
	return nil
}
