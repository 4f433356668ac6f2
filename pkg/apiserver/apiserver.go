// Package apiserver is the API server process as a library: it opens the
// store, starts the IPC server with the ingest handler, the live view and
// the HTTP API, and closes them in reverse order. It imports no packet
// parsing (capture, decode, flow, capfilter).
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/api"
	"github.com/lightshark-dev/lightshark-mini/pkg/api/web"
	"github.com/lightshark-dev/lightshark-mini/pkg/ingest"
	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/store"
)

// Config configures the API server. Zero fields take their defaults.
type Config struct {
	// Socket is the Unix socket the capturer dials; SocketMode its mode
	// (default 0660); CapturerUIDs the peer uids accepted besides the
	// server's own.
	Socket       string
	SocketMode   os.FileMode
	CapturerUIDs []int
	// DBPath is the SQLite file.
	DBPath string
	// Listen is the HTTP address (default ":3000").
	Listen string
	// Retention, MaxDBSize, AggregationWindow: see store.Options.
	Retention         time.Duration
	MaxDBSize         int64
	AggregationWindow time.Duration
	// Token, when set, is required by the API (bearer).
	Token string
	// AllowCIDRs limit the API's clients; AllowOrigins the browser origins.
	AllowCIDRs   []netip.Prefix
	AllowOrigins []string
	// MaxStreamClients bounds the /api/stream clients served at once
	// (default live.DefaultMaxSubscribers).
	MaxStreamClients int
	Logger           *slog.Logger
}

// Server is a running API server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	db     *store.DB
	live   *live.State
	ipc    *ipc.Server
	api    *api.Server
	http   *http.Server
	ln     net.Listener
	served chan error
}

// Start opens everything and starts serving. Close stops it.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = ":3000"
	}
	if cfg.SocketMode == 0 {
		cfg.SocketMode = 0o660
	}
	s := &Server{cfg: cfg, log: cfg.Logger, served: make(chan error, 1)}
	opts := store.DefaultOptions()
	opts.Retention, opts.MaxSize, opts.AggregationWindow = cfg.Retention, cfg.MaxDBSize, cfg.AggregationWindow
	opts.Logger = cfg.Logger.With("component", "store")
	if opts.Retention == 0 {
		opts.Retention = store.DefaultRetention
	}
	db, err := store.Open(ctx, cfg.DBPath, opts)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", cfg.DBPath, err)
	}
	s.db = db
	s.live = live.New()
	if cfg.MaxStreamClients > 0 {
		s.live.Hub.MaxSubscribers = cfg.MaxStreamClients
	}
	in := &ingest.Ingest{Store: db, Live: s.live, Logger: cfg.Logger.With("component", "ingest")}
	in.PublishTraffic() // the stored totals, before any capturer connects
	uids := append([]int{os.Getuid()}, cfg.CapturerUIDs...)
	s.ipc = &ipc.Server{Path: cfg.Socket, Mode: cfg.SocketMode, AllowedUIDs: uids, Handler: in,
		Logger: cfg.Logger}
	if err := s.ipc.Start(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Socket, err)
	}
	s.api = &api.Server{Store: storeAdapter{db}, Live: s.live, Token: cfg.Token, AllowCIDRs: cfg.AllowCIDRs,
		AllowOrigins: cfg.AllowOrigins, Logger: cfg.Logger.With("component", "api"), Dashboard: web.Handler()}
	s.http = s.api.NewHTTPServer(cfg.Listen)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.ipc.Close(context.Background())
		db.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.ln = ln
	if cfg.Token == "" && !loopbackOnly(ln.Addr()) {
		s.log.Warn("the API listens beyond loopback without a token: anyone who reaches it reads the traffic history",
			"listen", ln.Addr().String(), "fix", "--api-token-file or --listen 127.0.0.1:3000")
	}
	go func() { s.served <- s.http.Serve(ln) }()
	s.log.Info("api server started", "listen", ln.Addr().String(), "socket", cfg.Socket, "db", cfg.DBPath)
	return s, nil
}

// Addr is the HTTP listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the HTTP server, then the IPC server (finishing the batch
// being applied), then closes the store.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	if err := s.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := s.ipc.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("ipc shutdown: %w", err))
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close database: %w", err))
	}
	return errors.Join(errs...)
}

func loopbackOnly(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// storeAdapter gives the API its Store view of the SQLite store.
type storeAdapter struct{ db *store.DB }

func (a storeAdapter) query(q api.FlowQuery) store.FlowQuery {
	return store.FlowQuery{IP: q.IP, CIDR: q.CIDR, Port: q.Port, Proto: q.Proto, State: q.State,
		Direction: q.Direction, Since: q.Since, Until: q.Until, Order: store.Order(q.Order),
		Ascending: q.Ascending, Limit: q.Limit, Cursor: q.Cursor}
}

func (a storeAdapter) Flows(ctx context.Context, q api.FlowQuery) ([]record.Flow, string, error) {
	flows, next, err := a.db.Flows(ctx, a.query(q))
	return flows, next, storeErr(err)
}

func (a storeAdapter) Flow(ctx context.Context, id string) (record.Flow, bool, error) {
	f, err := a.db.Flow(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return record.Flow{}, false, nil
	}
	return f, err == nil, err
}

func (a storeAdapter) EachFlow(ctx context.Context, q api.FlowQuery, fn func(*record.Flow) error) error {
	return storeErr(a.db.EachFlow(ctx, a.query(q), fn))
}

// storeErr maps the store's errors about a query to the API's.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrBadCursor):
		return fmt.Errorf("%w: %v", api.ErrBadCursor, err)
	case errors.Is(err, store.ErrInvalid):
		return fmt.Errorf("%w: %v", api.ErrBadQuery, err)
	}
	return err
}

func (a storeAdapter) History(ctx context.Context, limit int) ([]record.PacketSample, error) {
	return a.db.History(ctx, limit)
}

func (a storeAdapter) Size(ctx context.Context) (int64, error) { return a.db.Size(ctx) }

func (a storeAdapter) AggregationWindow() time.Duration { return a.db.AggregationWindow() }

func (a storeAdapter) SQLiteMemory() (used, highwater int64, err error) { return store.SQLiteMemory() }

func (a storeAdapter) Series(ctx context.Context, q api.SeriesQuery) (*api.SeriesResult, error) {
	f := a.query(q.Filter)
	res, err := a.db.Series(ctx, store.SeriesQuery{Filter: f, Since: q.Since, Step: q.Step, Buckets: q.Buckets,
		By: q.By, Metric: q.Metric})
	if err != nil {
		return nil, storeErr(err)
	}
	out := &api.SeriesResult{Source: res.Source, Exact: res.Exact, Series: make([]api.SeriesData, len(res.Series))}
	for i, s := range res.Series {
		out.Series[i] = api.SeriesData{Key: s.Key, Total: s.Total, Values: s.Values}
	}
	return out, nil
}
