package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/metrics"
)

// Defaults of the Server's settings, and of NewHTTPServer.
const (
	DefaultStatsInterval      = time.Second
	DefaultPingInterval       = 30 * time.Second
	DefaultStreamWriteTimeout = 10 * time.Second
	DefaultQueryTimeout       = 10 * time.Second
	DefaultStreamSendBuffer   = 128 << 10
	DefaultMaxQueryBytes      = 4096

	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
)

//go:embed openapi.json
var openAPIDoc []byte

// Server serves the HTTP API. Set the fields, then call Handler (or
// NewHTTPServer); do not change them afterwards. Zero fields take the
// defaults. Handler and Close are safe for concurrent use.
type Server struct {
	// Store is the history: /api/flows and /api/flows/{id} answer 503
	// without it, and /api/history falls back to Live's recent samples.
	Store Store
	// Live is the live view. Required.
	Live *live.State
	// Token, when set, must be given as "Authorization: Bearer TOKEN" to
	// every endpoint but /api/health, /api/openapi.json and the dashboard
	// (browsers cannot set headers on a WebSocket, so /api/stream also
	// takes ?access_token=TOKEN).
	Token string
	// AllowCIDRs, when set, are the client addresses served; others get
	// 403. The address is the TCP peer's: proxies are not trusted.
	AllowCIDRs []netip.Prefix
	// AllowOrigins are the browser origins ("https://grafana.example:3000",
	// or "*" for any) given CORS headers and allowed to open /api/stream.
	// Empty: same-origin only, and no CORS headers at all.
	AllowOrigins []string
	// Logger receives errors (default: discard).
	Logger *slog.Logger
	// Now is the clock (default: Live.Now).
	Now func() time.Time
	// Dashboard, when set, serves GET / (the embedded dashboard).
	Dashboard http.Handler

	// StatsInterval is the period of /api/stream's stats messages.
	StatsInterval time.Duration
	// PingInterval is the period of /api/stream's pings; a client that
	// does not answer within two intervals is disconnected.
	PingInterval time.Duration
	// StreamWriteTimeout disconnects a stream client that does not take a
	// message within it (its flow updates are dropped, and counted, while
	// it lags).
	StreamWriteTimeout time.Duration
	// StreamBuffer bounds the flow updates queued per stream client
	// (default live.DefaultBuffer).
	StreamBuffer int
	// StreamSendBuffer is the kernel send buffer of a stream client's
	// socket (SO_SNDBUF; default 128 KiB), so that a client that stops
	// reading holds little memory before it is dropped.
	StreamSendBuffer int
	// QueryTimeout bounds each store query but the NDJSON export.
	QueryTimeout time.Duration
	// MaxQueryBytes bounds the query string (414 beyond).
	MaxQueryBytes int
	// WriteTimeout is the time allowed to write a response (set by
	// NewHTTPServer); the NDJSON export extends it as it goes.
	WriteTimeout time.Duration

	once      sync.Once
	handler   http.Handler
	mux       *http.ServeMux
	patterns  []string // registered, for the OpenAPI test
	log       *slog.Logger
	tokenHash [sha256.Size]byte
	registry  *metrics.Registry
	scrapeMu  sync.Mutex
	scrape    live.Snapshot // the snapshot being scraped, under scrapeMu
	errLog    errorLogger
	liveCache responseCache // of /api/live

	streamMu sync.Mutex
	closed   bool
	streams  sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

// Handler returns the API's handler, building it on the first call.
func (s *Server) Handler() http.Handler {
	s.once.Do(s.init)
	return s.handler
}

func (s *Server) init() {
	if s.Live == nil {
		panic("api: Server.Live is required")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.log = s.Logger.With("component", "api")
	s.errLog.log = s.log
	if s.Now == nil {
		s.Now = s.Live.Now
	}
	setDefault(&s.StatsInterval, DefaultStatsInterval)
	setDefault(&s.PingInterval, DefaultPingInterval)
	setDefault(&s.StreamWriteTimeout, DefaultStreamWriteTimeout)
	setDefault(&s.QueryTimeout, DefaultQueryTimeout)
	setDefault(&s.WriteTimeout, DefaultWriteTimeout)
	if s.StreamSendBuffer <= 0 {
		s.StreamSendBuffer = DefaultStreamSendBuffer
	}
	if s.MaxQueryBytes <= 0 {
		s.MaxQueryBytes = DefaultMaxQueryBytes
	}
	if s.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(s.Token))
	}
	s.streamMu.Lock()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.closed {
		s.cancel()
	}
	s.streamMu.Unlock()
	s.registry = s.newRegistry()

	s.mux = http.NewServeMux()
	s.route("GET /api/health", s.handleHealth, true)
	s.route("GET /api/live", s.handleLive, false)
	s.route("GET /api/history", s.handleHistory, false)
	s.route("GET /api/stats", s.handleStats, false)
	s.route("GET /api/stream", s.handleStream, false)
	s.route("GET /api/flows", s.handleFlows, false)
	s.route("GET /api/flows/{id}", s.handleFlow, false)
	s.route("GET /api/series", s.handleSeries, false)
	s.route("GET /api/openapi.json", s.handleOpenAPI, true)
	s.route("GET /metrics", s.handleMetrics, false)
	if s.Dashboard != nil {
		s.route("GET /", s.Dashboard.ServeHTTP, true)
	}
	s.handler = s.guard(http.HandlerFunc(s.serveMux))
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// route registers h; unless public, it requires the token when one is set.
func (s *Server) route(pattern string, h http.HandlerFunc, public bool) {
	s.patterns = append(s.patterns, pattern)
	if public || s.Token == "" {
		s.mux.Handle(pattern, h)
		return
	}
	stream := pattern == "GET /api/stream"
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r, stream) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lightshark-mini"`)
			writeError(w, http.StatusUnauthorized, "missing or invalid bearer token")
			return
		}
		h(w, r)
	})
}

// authorized checks the bearer token in constant time (comparing hashes,
// so the token's length does not leak either).
func (s *Server) authorized(r *http.Request, allowQuery bool) bool {
	var given string
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		given = strings.TrimSpace(h[7:])
	} else if allowQuery {
		// RFC 6750 §2.3; only where a browser has no other way.
		if v, err := url.ParseQuery(r.URL.RawQuery); err == nil {
			given = v.Get("access_token")
		}
	}
	if given == "" {
		return false
	}
	h := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1
}

// guard applies what holds for every request: the client CIDRs, bounded
// query strings and bodies, CORS, and headers.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if len(s.AllowCIDRs) > 0 && !s.clientAllowed(r) {
			writeError(w, http.StatusForbidden, "client address not allowed")
			return
		}
		if len(r.URL.RawQuery) > s.MaxQueryBytes {
			writeError(w, http.StatusRequestURITooLong, fmt.Sprintf("query string longer than %d bytes", s.MaxQueryBytes))
			return
		}
		if r.ContentLength != 0 {
			// No endpoint reads a body. Refuse one (declared or chunked)
			// and close, rather than let net/http drain it before
			// answering, which a slow client stretches to ReadTimeout.
			// (http.MaxBytesReader would not help: net/http could no
			// longer see that the body is unread, with the same wait.)
			h.Set("Connection", "close")
			writeError(w, http.StatusRequestEntityTooLarge, "request bodies are not accepted")
			return
		}
		if len(s.AllowOrigins) > 0 {
			h.Add("Vary", "Origin")
			if origin := r.Header.Get("Origin"); origin != "" && s.originListed(origin) {
				h.Set("Access-Control-Allow-Origin", origin)
				if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
					// Preflight: answered here, before the token check,
					// because browsers send it without credentials.
					h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
					h.Set("Access-Control-Allow-Headers", "Authorization")
					h.Set("Access-Control-Max-Age", "600")
					w.WriteHeader(http.StatusNoContent)
					return
				}
			}
		}
		if r.URL.Path == "/metrics" || strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) clientAllowed(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap().WithZone("")
	for _, p := range s.AllowCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// originListed reports whether origin is in AllowOrigins.
func (s *Server) originListed(origin string) bool {
	for _, o := range s.AllowOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// checkOrigin is the WebSocket's origin check: no Origin (not a browser),
// the same host as the request, or a listed origin.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return s.originListed(origin)
}

// serveMux dispatches to the mux, turning its own plain-text 404 and 405
// answers into JSON errors. The dashboard's catch-all "GET /" does not
// get the API's paths.
func (s *Server) serveMux(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	switch {
	case pattern == "":
		h.ServeHTTP(&jsonErrorWriter{ResponseWriter: w}, r)
	case pattern == "GET /" && (strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/metrics"):
		writeError(w, http.StatusNotFound, "not found")
	default:
		s.mux.ServeHTTP(w, r)
	}
}

// jsonErrorWriter rewrites an error written with http.Error (404, 405,
// redirects aside) as a JSON error.
type jsonErrorWriter struct {
	http.ResponseWriter
	swallow bool
}

func (w *jsonErrorWriter) WriteHeader(code int) {
	if code >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.swallow = true
		msg := strings.ToLower(http.StatusText(code))
		if code == http.StatusMethodNotAllowed {
			msg += " (allowed: " + w.Header().Get("Allow") + ")"
		}
		writeError(w.ResponseWriter, code, msg)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *jsonErrorWriter) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
	// Parameter names the query parameter at fault, for a 400.
	Parameter string `json:"parameter,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(code)
	// Encode fails only when the client is gone: nobody to tell.
	_ = json.NewEncoder(w).Encode(v)
}

// writeBadRequest answers 400, naming the parameter of a *paramError.
func (s *Server) writeBadRequest(w http.ResponseWriter, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: pe.Error(), Parameter: pe.param})
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

// writeStoreError answers for a failed store call made for op.
func (s *Server) writeStoreError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, ErrBadCursor):
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "cursor: not a cursor for this query", Parameter: "cursor"})
	case errors.Is(err, ErrBadQuery):
		writeError(w, http.StatusBadRequest, err.Error())
	case r.Context().Err() != nil:
		// The client is gone: nobody to answer.
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, op+": timed out")
	default:
		s.errLog.Error(op, err)
		writeError(w, http.StatusInternalServerError, op+": "+err.Error())
	}
}

// errorLogger logs a repeating error at most once per interval, with the
// count of those it left out.
type errorLogger struct {
	log        *slog.Logger
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const errorLogInterval = 10 * time.Second

func (l *errorLogger) Error(op string, err error) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < errorLogInterval {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	l.log.Error("store query failed", "op", op, "err", err, "suppressed", n)
}

// NewHTTPServer returns an *http.Server for s on addr with the timeouts and
// limits of a server facing untrusted clients: ReadHeaderTimeout (a
// slowloris client is cut off), ReadTimeout, WriteTimeout, IdleTimeout and
// MaxHeaderBytes (431 beyond). Its Shutdown also closes the WebSocket
// streams, which Shutdown does not track; call Close to wait for them.
func (s *Server) NewHTTPServer(addr string) *http.Server {
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = DefaultWriteTimeout
	}
	h := s.Handler()
	hs := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(s.closeStreams)
	return hs
}

// closeStreams tells every WebSocket stream to close, and refuses new ones.
func (s *Server) closeStreams() {
	s.streamMu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.streamMu.Unlock()
}

// Close closes the WebSocket streams (with a "going away" close message)
// and waits for their goroutines, or for ctx. Close the *http.Server
// first, so that no new stream starts.
func (s *Server) Close(ctx context.Context) error {
	s.closeStreams()
	done := make(chan struct{})
	go func() {
		s.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close api streams: %w", ctx.Err())
	}
}

// startStream counts a stream in, unless the server is closing.
func (s *Server) startStream() bool {
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	if s.closed {
		return false
	}
	s.streams.Add(1)
	return true
}
