package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Defaults of Options.
const (
	DefaultRetention      = 24 * time.Hour
	DefaultMaxSize        = 256 << 20
	DefaultReadConns      = 2
	DefaultRetainInterval = 10 * time.Second
	DefaultCacheKiB       = 2048

	// MinMaxSize is the smallest size bound Open accepts.
	MinMaxSize = 1 << 20

	busyTimeoutMS = 5000
	// analysisLimit bounds the rows PRAGMA optimize reads per index.
	analysisLimit = 400
	// The live pages of the main file may reach highWaterPct % of its cap
	// before Retain deletes the oldest rows, down to lowWaterPct %. The
	// room above the high-water mark absorbs ingest while the retention
	// runs (a few seconds of ingest at 100k rows/s).
	highWaterPct, lowWaterPct = 85, 70
)

// Options configure a DB. The zero value of a field means its default
// unless its comment says otherwise; DefaultOptions returns them filled in.
type Options struct {
	// Retention is how long rows are kept, by capture time (the original
	// --data-retention). Zero means DefaultRetention (24 h); negative keeps
	// rows until the size bound needs their room.
	Retention time.Duration
	// MaxSize bounds the database in bytes: the main file plus its WAL
	// (--max-db-size). Zero means DefaultMaxSize (256 MiB); at least
	// MinMaxSize; negative means unbounded. A WAL budget of MaxSize/8
	// (between 2 and 64 MiB) is set aside; the main file is capped at the
	// rest, and Retain deletes the oldest rows when the live pages pass
	// 85 % of that cap, down to 70 %.
	MaxSize int64
	// AggregationWindow is the width of the per-flow windows in
	// flow_windows (the original --aggregation-window), rounded down to
	// whole seconds. Zero (the original default) stores no windows.
	AggregationWindow time.Duration
	// ReadConns is the size of the read-only pool (default 2: the machine
	// the sidecar shares has few cores; more readers wait for a free one).
	ReadConns int
	// CacheKiB is the writer's page cache in KiB (default 2048); each
	// reader has a quarter of it (at least 256 KiB). At the defaults SQLite
	// caches at most 3 MiB in all, for the 16 MiB memory budget.
	CacheKiB int
	// RetainInterval is how often a background goroutine runs Retain, and
	// it also runs when a batch finds the file over its high-water mark.
	// Zero runs no goroutine: the caller calls Retain (tests do).
	RetainInterval time.Duration
	// Logger receives the background retention's errors (default discard).
	Logger *slog.Logger
	// Now is the clock for receive times and background retention
	// (default time.Now).
	Now func() time.Time
}

// DefaultOptions returns the defaults, with the background retention on.
func DefaultOptions() Options {
	return Options{
		Retention:      DefaultRetention,
		MaxSize:        DefaultMaxSize,
		ReadConns:      DefaultReadConns,
		CacheKiB:       DefaultCacheKiB,
		RetainInterval: DefaultRetainInterval,
	}
}

func (o Options) withDefaults() (Options, error) {
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	switch {
	case o.MaxSize == 0:
		o.MaxSize = DefaultMaxSize
	case o.MaxSize > 0 && o.MaxSize < MinMaxSize:
		return o, fmt.Errorf("max size %d bytes is under the minimum %d: %w", o.MaxSize, MinMaxSize, ErrInvalid)
	}
	if o.AggregationWindow < 0 {
		return o, fmt.Errorf("aggregation window %v is negative: %w", o.AggregationWindow, ErrInvalid)
	}
	if o.AggregationWindow > 0 && o.AggregationWindow < time.Second {
		return o, fmt.Errorf("aggregation window %v is under one second: %w", o.AggregationWindow, ErrInvalid)
	}
	if o.ReadConns <= 0 {
		o.ReadConns = DefaultReadConns
	}
	if o.CacheKiB <= 0 {
		o.CacheKiB = DefaultCacheKiB
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// DB is an open store. Its methods are safe for concurrent use: writes
// (ApplyBatch, Retain) take turns on the one writer connection, reads run on
// the read-only pool in parallel with them.
type DB struct {
	path   string
	opts   Options
	w      *sql.DB      // one connection: every write
	r      *sql.DB      // read-only pool
	writer *batchWriter // the writer's statements and buffers (writer.go)
	// traffic mirrors the traffic table (traffic.go).
	traffic trafficTotals
	window  int64 // aggregation window in seconds, 0: off
	// scanBudget is the rows a filtered page reads in order before it
	// reads the filter's matches instead (orderedScanBudget).
	scanBudget int

	pageSize int64
	// Size budget, in bytes; all zero when unbounded.
	walBudget int64 // journal_size_limit; WAL truncated above it
	mainCap   int64 // max_page_count * page size
	highWater int64 // live pages above this: Retain deletes
	lowWater  int64 // … down to this

	retainMu  sync.Mutex    // one Retain at a time
	optimized time.Time     // last PRAGMA optimize, under retainMu
	pressure  chan struct{} // ApplyBatch → background retention, cap 1
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database at path, applies the pending
// migrations and, if opts.RetainInterval > 0, starts the background
// retention. ctx bounds the opening and the migrations only.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, wrap("open", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, wrap("open", err)
	}
	db := &DB{
		path:       abs,
		opts:       opts,
		window:     int64(opts.AggregationWindow / time.Second),
		scanBudget: orderedScanBudget,
		pressure:   make(chan struct{}, 1),
		writer:     newBatchWriter(),
	}
	if err := db.open(ctx); err != nil {
		db.closeConns()
		return nil, wrap("open "+abs, err)
	}
	if opts.RetainInterval > 0 {
		rctx, cancel := context.WithCancel(context.Background())
		db.cancel = cancel
		db.wg.Add(1)
		go func() {
			defer db.wg.Done()
			db.retainLoop(rctx, opts.RetainInterval)
		}()
	}
	return db, nil
}

func (db *DB) open(ctx context.Context) error {
	ps, exists, err := readHeader(db.path)
	if err != nil {
		return err
	}
	db.pageSize = ps
	if limit := db.opts.MaxSize; limit > 0 {
		db.walBudget = min(max(limit/8, 2<<20), 64<<20)
		db.mainCap = (limit - db.walBudget) / ps * ps
		db.highWater = db.mainCap * highWaterPct / 100
		db.lowWater = db.mainCap * lowWaterPct / 100
	}

	wq := url.Values{}
	wq.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	if !exists {
		// The driver runs the _pragma list sorted by name after
		// busy_timeout: auto_vacuum comes before journal_mode, and both
		// before the first table, as auto_vacuum requires. On an existing
		// file it could not change anything (that takes a VACUUM) and it
		// writes the header, which fails on a read-only file: Open checks
		// the value instead.
		wq.Add("_pragma", "auto_vacuum(INCREMENTAL)")
	}
	wq.Add("_pragma", "foreign_keys(ON)")
	wq.Add("_pragma", "journal_mode(WAL)")
	wq.Add("_pragma", "synchronous(NORMAL)")
	wq.Add("_pragma", fmt.Sprintf("cache_size(-%d)", db.opts.CacheKiB))
	wq.Add("_pragma", fmt.Sprintf("analysis_limit(%d)", analysisLimit))
	// Statement journals (an upsert's, to undo one failed statement) in
	// memory, not in a temporary file per statement: they hold the few
	// pages one statement changes. The writer runs no large sorts.
	wq.Add("_pragma", "temp_store(MEMORY)")
	if db.mainCap > 0 {
		wq.Add("_pragma", fmt.Sprintf("max_page_count(%d)", db.mainCap/ps))
		wq.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", db.walBudget))
		// Checkpoint at half the WAL budget (SQLite's default is 1000
		// pages), so that a checkpointed WAL fits its budget.
		wq.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", min(db.walBudget/2/ps, 1000)))
	}
	// BEGIN IMMEDIATE: a write transaction takes the write lock at once
	// instead of upgrading later, which could fail with SQLITE_BUSY.
	wq.Set("_txlock", "immediate")
	db.w, err = sql.Open("sqlite", fileURI(db.path, wq))
	if err != nil {
		return err
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)

	var mode string
	if err := db.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal_mode is %q, want wal (a file system without shared memory, or a read-only file?)", mode)
	}
	var av int
	if err := db.w.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&av); err != nil {
		return fmt.Errorf("read auto_vacuum: %w", err)
	}
	if av != 2 {
		return fmt.Errorf("auto_vacuum is %d, want 2 (incremental): the file was created by another program", av)
	}
	if err := db.w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&db.pageSize); err != nil {
		return fmt.Errorf("read page_size: %w", err)
	}
	if db.pageSize != ps {
		return fmt.Errorf("page size %d, header said %d", db.pageSize, ps)
	}
	if err := migrate(ctx, db.w, migrations); err != nil {
		return err
	}
	if err := setWindowTriggers(ctx, db.w, db.window); err != nil {
		return err
	}
	if err := checkBatchSQL(ctx, db.w); err != nil {
		return err
	}
	if err := db.traffic.load(ctx, db); err != nil {
		return err
	}

	rq := url.Values{}
	rq.Set("mode", "ro")
	rq.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	rq.Add("_pragma", fmt.Sprintf("cache_size(-%d)", max(db.opts.CacheKiB/4, 256)))
	rq.Add("_pragma", "query_only(1)")
	db.r, err = sql.Open("sqlite", fileURI(db.path, rq))
	if err != nil {
		return err
	}
	db.r.SetMaxOpenConns(db.opts.ReadConns)
	db.r.SetMaxIdleConns(db.opts.ReadConns)
	if err := db.r.PingContext(ctx); err != nil {
		return fmt.Errorf("open read-only pool: %w", err)
	}
	return nil
}

// fileURI returns the SQLite URI of an absolute path with query q. The
// "file:" form makes SQLite honour mode=ro; the driver reads the _ keys.
func fileURI(abs string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// readHeader returns the page size in the header of an existing database
// file, or SQLite's default 4096 and exists false for a missing or empty
// file. The size cap (max_page_count) is set in the DSN, before any query
// can ask.
func readHeader(path string) (pageSize int64, exists bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 4096, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	var h [100]byte
	if n, err := io.ReadFull(f, h[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return 4096, false, nil // empty: SQLite initialises it
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, false, errors.New("not a SQLite database (file shorter than its header)")
		}
		return 0, false, err
	}
	// https://www.sqlite.org/fileformat.html#the_database_header
	if string(h[:16]) != "SQLite format 3\x00" {
		return 0, false, errors.New("not a SQLite database (bad header)")
	}
	// Offset 16, big-endian, 1 meaning 65536.
	ps := int64(binary.BigEndian.Uint16(h[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps&(ps-1) != 0 {
		return 0, false, errors.New("not a SQLite database (bad page size in header)")
	}
	return ps, true, nil
}

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// Close stops the background retention, closes every connection (the last
// one checkpoints the WAL into the main file) and returns the first error.
// It is safe to call more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		if db.cancel != nil {
			db.cancel()
		}
		db.wg.Wait()
		db.closeErr = db.closeConns()
	})
	return db.closeErr
}

func (db *DB) closeConns() error {
	var errs []error
	if db.r != nil {
		errs = append(errs, db.r.Close())
	}
	if db.w != nil {
		// Refresh the planner's statistics for the next run (cheap: it
		// reads at most analysis_limit rows per index); best effort.
		_, _ = db.w.Exec("PRAGMA optimize")
		errs = append(errs, db.w.Close())
	}
	return wrap("close", errors.Join(errs...))
}

// IntegrityCheck runs PRAGMA integrity_check on a read-only connection and
// returns nil if SQLite reports "ok", else an error listing the problems.
// It reads the whole file: for tests and operators, not for a hot path.
func (db *DB) IntegrityCheck(ctx context.Context) error {
	rows, err := db.r.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return wrap("integrity check", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return wrap("integrity check", err)
		}
		msgs = append(msgs, s)
	}
	if err := rows.Err(); err != nil {
		return wrap("integrity check", err)
	}
	if len(msgs) == 1 && msgs[0] == "ok" {
		return nil
	}
	return wrap("integrity check", fmt.Errorf("%d problems, first: %s", len(msgs), first(msgs)))
}

func first(s []string) string {
	if len(s) == 0 {
		return "(none reported)"
	}
	return strconv.Quote(s[0])
}
