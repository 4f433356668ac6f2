package ipc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler commits batches for a Server; the API server's ingest implements
// it. The Server calls it from one goroutine per connection, and never for
// the same instance id from two goroutines at once.
type Handler interface {
	// Apply commits b, received from peer. It returns nil only once b is
	// durably committed: the server then acknowledges it and the client
	// forgets it. On error the server closes the connection and the client
	// resends b later. b and its slices are valid only during the call
	// (strings stay valid). ctx is cancelled when the server closes or
	// another connection takes the instance over.
	Apply(ctx context.Context, peer Peer, b *Batch) error
	// LastSeq returns the highest seq committed for instanceID, 0 if none.
	// It must come from the same store as the data Apply commits, so that
	// it survives restarts of the server: that is what makes delivery at
	// most once.
	LastSeq(ctx context.Context, instanceID string) (uint64, error)
}

// Peer is the process at the other end of a connection.
type Peer struct {
	// UID, GID and PID are from SO_PEERCRED (PID is 0 across PID
	// namespaces).
	UID, GID, PID int
	// Hello is the peer's hello.
	Hello Hello
	// Version is the negotiated major version.
	Version uint16
}

// Server accepts capturer connections on a Unix socket and hands their
// batches to a Handler. Set the fields, then call Start; do not change them
// afterwards. Stats and Close are safe for concurrent use.
type Server struct {
	// Path is the socket's path. Required.
	Path string
	// Mode is the socket's permission bits (default 0660). The uid
	// allowlist is checked whatever the mode.
	Mode os.FileMode
	// AllowedUIDs are the peer uids accepted (default: the server's own
	// uid only).
	AllowedUIDs []int
	// Handler commits batches. Required.
	Handler Handler
	// Limits bound what one frame may make the server allocate (zero
	// fields: the defaults, which the Client stays within).
	Limits Limits
	// MaxConns bounds open connections of allowed peers (default 4; a
	// capturer needs one). Connections over it get a busy error.
	MaxConns int
	// ReadTimeout bounds the time to receive a whole frame once its first
	// byte arrived, and the time from connect to a complete hello (default
	// 10 s). A peer that stalls mid-frame is dropped after it.
	ReadTimeout time.Duration
	// IdleTimeout bounds the time between frames after the hello (default
	// 0: no bound; a capturer sends a batch every flush interval).
	IdleTimeout time.Duration
	// Logger receives connection events (default: discard).
	Logger *slog.Logger

	versionMin, versionMax uint16 // tests widen these

	log    *slog.Logger
	ln     *net.UnixListener
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	conns     map[*serverConn]struct{}
	instances map[string]*serverConn

	accepted, rejected, protoErrors, applyErrors atomic.Uint64
	batches, duplicates                          atomic.Uint64
}

// ServerStats are the server's counters since Start.
type ServerStats struct {
	Conns          int    // connections open now
	Accepted       uint64 // connections that completed a hello
	Rejected       uint64 // connections refused: uid not allowed, too many
	ProtocolErrors uint64 // connections closed for bad input or a timeout
	ApplyErrors    uint64 // connections closed because Apply failed
	Batches        uint64 // batches applied
	Duplicates     uint64 // batches acknowledged without applying (seq <= last)
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return ServerStats{
		Conns:          n,
		Accepted:       s.accepted.Load(),
		Rejected:       s.rejected.Load(),
		ProtocolErrors: s.protoErrors.Load(),
		ApplyErrors:    s.applyErrors.Load(),
		Batches:        s.batches.Load(),
		Duplicates:     s.duplicates.Load(),
	}
}

var (
	errShutdown = errors.New("server closing")
	errReplaced = errors.New("replaced by a newer connection of the same instance")
)

// Start creates the socket and starts accepting connections. The parent
// directory is created (mode 0750) if missing. A socket file left by a dead
// server is replaced; one with a live server behind it is ErrSocketInUse.
// The server stops when ctx is cancelled or Close is called.
func (s *Server) Start(ctx context.Context) error {
	if s.Path == "" {
		return errors.New("ipc server: no socket path")
	}
	if s.Handler == nil {
		return errors.New("ipc server: no handler")
	}
	if s.Mode == 0 {
		s.Mode = 0o660
	}
	if len(s.AllowedUIDs) == 0 {
		s.AllowedUIDs = []int{os.Getuid()}
	}
	s.Limits = s.Limits.withDefaults()
	if s.MaxConns <= 0 {
		s.MaxConns = 4
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = 10 * time.Second
	}
	if s.versionMin == 0 {
		s.versionMin, s.versionMax = ProtocolVersion, ProtocolVersion
	}
	s.log = s.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "ipc", "socket", s.Path)

	ln, err := listen(s.Path, s.Mode)
	if err != nil {
		return err
	}
	s.ln = ln
	s.conns = make(map[*serverConn]struct{})
	s.instances = make(map[string]*serverConn)
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	// Cancelling ctx stops accepting too; Close still waits.
	context.AfterFunc(s.ctx, func() { ln.Close() })
	s.wg.Add(1)
	go s.acceptLoop()
	s.log.Info("ipc server listening", "mode", fmt.Sprintf("%#o", s.Mode), "allowed_uids", s.AllowedUIDs)
	return nil
}

// listen creates the socket at path with the given mode.
func listen(path string, mode os.FileMode) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
		// MkdirAll's mode is narrowed by the umask; say what we mean.
		if err := os.Chmod(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on %s: exists and is not a socket", path)
		}
		// A socket file outlives its server. Probe it: a live server
		// accepts, a dead one's file refuses.
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: %w", path, ErrSocketInUse)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("probe existing socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Until this chmod the socket has the umask's mode; the uid check
	// protects that window.
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return ln, nil
}

// Close stops accepting, tells each connected client that the server is
// closing, cancels the context of running Apply calls and waits for every
// connection goroutine, within ctx. It removes the socket file.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed || s.ln == nil {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel(errShutdown) // closes the listener
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close ipc server: %w", ctx.Err())
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait a little and retry, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("ipc accept failed", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		s.wg.Add(1)
		go s.serve(nc)
	}
}

// serverConn is one connection's state, owned by its goroutine.
type serverConn struct {
	s      *Server
	nc     *net.UnixConn
	br     *bufio.Reader
	buf    []byte
	dec    *Decoder
	enc    *Encoder
	peer   Peer
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// aLongTimeAgo is a deadline in the past: setting it unblocks a read.
var aLongTimeAgo = time.Unix(1, 0)

func (s *Server) serve(nc *net.UnixConn) {
	defer s.wg.Done()
	defer nc.Close()
	c := &serverConn{s: s, nc: nc, done: make(chan struct{})}
	defer close(c.done)
	c.ctx, c.cancel = context.WithCancelCause(s.ctx)
	defer c.cancel(nil)
	// Cancelling the connection (Close, takeover) unblocks its read.
	stop := context.AfterFunc(c.ctx, func() { nc.SetReadDeadline(aLongTimeAgo) })
	defer stop()

	// The kernel's word on who connected, before reading a byte.
	uid, gid, pid, err := peerCred(nc)
	log := s.log.With("peer_uid", uid, "peer_pid", pid)
	if err != nil {
		s.rejected.Add(1)
		log.Warn("ipc peer rejected", "reason", err)
		c.enc = NewEncoder()
		c.sendError(ErrCodeForbidden, "peer credentials unavailable")
		return
	}
	if !slices.Contains(s.AllowedUIDs, uid) {
		s.rejected.Add(1)
		log.Warn("ipc peer rejected", "reason", "uid not allowed", "allowed_uids", s.AllowedUIDs)
		c.enc = NewEncoder()
		c.sendError(ErrCodeForbidden, fmt.Sprintf("uid %d is not allowed", uid))
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.conns) >= s.MaxConns {
		s.mu.Unlock()
		s.rejected.Add(1)
		log.Warn("ipc peer rejected", "reason", "too many connections", "max_conns", s.MaxConns)
		c.enc = NewEncoder()
		c.sendError(ErrCodeBusy, fmt.Sprintf("%d connections open, the limit", s.MaxConns))
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		if s.instances[c.peer.Hello.InstanceID] == c {
			delete(s.instances, c.peer.Hello.InstanceID)
		}
		s.mu.Unlock()
	}()

	c.peer = Peer{UID: uid, GID: gid, PID: pid}
	c.log = log
	c.br = bufio.NewReaderSize(nc, readChunk)
	c.dec = NewDecoder(s.Limits)
	c.enc = NewEncoder()
	code, err := c.run()
	switch {
	case err == nil:
	case code == ErrCodeShutdown || code == ErrCodeReplaced:
		c.log.Info("ipc connection closed", "reason", err)
		c.sendError(code, err.Error())
	case code != "":
		c.log.Warn("ipc connection closed", "reason", err, "code", code)
		c.sendError(code, err.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		c.log.Info("capturer disconnected", "reason", err)
	default:
		c.log.Warn("ipc connection closed", "reason", err)
	}
}

// run serves one authenticated connection until it ends. It returns the
// reason, and the error code to send the peer (empty for none).
func (c *serverConn) run() (code string, err error) {
	s := c.s
	m, err := c.read(true)
	if err != nil {
		return c.readFailed(err)
	}
	h, ok := m.(*Hello)
	if !ok {
		s.protoErrors.Add(1)
		return ErrCodeProtocol, fmt.Errorf("%s before hello", m.Type())
	}
	c.peer.Hello = *h
	c.log = c.log.With("instance_id", h.InstanceID)
	v, ok := negotiate(h.VersionMin, h.VersionMax, s.versionMin, s.versionMax)
	if !ok {
		s.protoErrors.Add(1)
		c.log.Warn("ipc connection closed", "reason", "no common protocol version",
			"client_versions", []uint16{h.VersionMin, h.VersionMax}, "server_versions", []uint16{s.versionMin, s.versionMax})
		c.send(&Error{Code: ErrCodeVersion, VersionMin: s.versionMin, VersionMax: s.versionMax,
			Message: fmt.Sprintf("client speaks versions %d-%d, server %d-%d", h.VersionMin, h.VersionMax, s.versionMin, s.versionMax)})
		return "", nil
	}
	c.peer.Version = v
	if err := c.claim(h.InstanceID); err != nil {
		return c.cancelled(err)
	}
	last, err := s.Handler.LastSeq(c.ctx, h.InstanceID)
	if err != nil {
		if c.ctx.Err() != nil {
			return c.cancelled(err)
		}
		return ErrCodeInternal, fmt.Errorf("last seq of %s: %w", h.InstanceID, err)
	}
	if err := c.send(&HelloAck{Version: v, LastSeq: last}); err != nil {
		return "", err
	}
	s.accepted.Add(1)
	c.log.Info("capturer connected", "proto_version", v, "last_seq", last,
		"interface", h.Interface, "hostname", h.Hostname, "software", h.Software)
	if o, ok := s.Handler.(ConnObserver); ok {
		o.Connected(c.peer)
		defer o.Disconnected(c.peer)
	}

	for {
		m, err := c.read(false)
		if err != nil {
			return c.readFailed(err)
		}
		switch m := m.(type) {
		case *Batch:
			if m.Seq <= last {
				s.duplicates.Add(1)
			} else {
				if err := s.Handler.Apply(c.ctx, c.peer, m); err != nil {
					if c.ctx.Err() != nil {
						return c.cancelled(err)
					}
					s.applyErrors.Add(1)
					return ErrCodeApply, fmt.Errorf("apply batch %d: %w", m.Seq, err)
				}
				s.batches.Add(1)
				last = m.Seq
			}
			if err := c.send(&Ack{Seq: m.Seq}); err != nil {
				return "", err
			}
		case *Error:
			return "", fmt.Errorf("client sent error: %w", m)
		default:
			s.protoErrors.Add(1)
			return ErrCodeProtocol, fmt.Errorf("unexpected %s after hello", m.Type())
		}
	}
}

// claim makes c the one connection of its instance: an older connection of
// the same instance is cancelled, and claim waits until it has finished,
// so that the LastSeq read next is final and no two connections apply
// batches of one instance.
func (c *serverConn) claim(id string) error {
	s := c.s
	s.mu.Lock()
	old := s.instances[id]
	s.instances[id] = c
	s.mu.Unlock()
	if old == nil {
		return nil
	}
	old.cancel(errReplaced)
	select {
	case <-old.done:
		return nil
	case <-c.ctx.Done():
		return context.Cause(c.ctx)
	}
}

// cancelled reports the end of a connection whose context was cancelled.
func (c *serverConn) cancelled(err error) (string, error) {
	switch cause := context.Cause(c.ctx); {
	case errors.Is(cause, errReplaced):
		return ErrCodeReplaced, cause
	case errors.Is(cause, errShutdown):
		return ErrCodeShutdown, cause
	case cause != nil:
		return ErrCodeShutdown, cause
	}
	return "", err
}

func (c *serverConn) readFailed(err error) (string, error) {
	if c.ctx.Err() != nil {
		return c.cancelled(err)
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "", err // the peer went away, maybe mid-frame
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.s.protoErrors.Add(1)
		return ErrCodeTimeout, fmt.Errorf("read: %w", err)
	case errors.Is(err, ErrTooLarge):
		c.s.protoErrors.Add(1)
		return ErrCodeTooLarge, err
	case errors.Is(err, ErrInvalid):
		c.s.protoErrors.Add(1)
		if c.peer.Version == 0 {
			return ErrCodeBadHello, err
		}
		return ErrCodeBadBatch, err
	case errors.Is(err, ErrMalformed):
		c.s.protoErrors.Add(1)
		return ErrCodeProtocol, err
	}
	return "", err
}

// read reads and decodes one frame. The first frame (the hello) must be
// complete within ReadTimeout of the connection; later frames may wait
// IdleTimeout for their first byte, then must complete within ReadTimeout.
func (c *serverConn) read(first bool) (Message, error) {
	s := c.s
	if !first {
		var d time.Time
		if s.IdleTimeout > 0 {
			d = time.Now().Add(s.IdleTimeout)
		}
		if err := c.deadline(d); err != nil {
			return nil, err
		}
		if _, err := c.br.Peek(1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.ctx.Err() == nil {
				return nil, fmt.Errorf("idle for %v: %w", s.IdleTimeout, err)
			}
			return nil, err
		}
	}
	if err := c.deadline(time.Now().Add(s.ReadTimeout)); err != nil {
		return nil, err
	}
	body, err := ReadFrame(c.br, c.buf, s.Limits.MaxFrame)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && c.ctx.Err() == nil {
			return nil, fmt.Errorf("frame not complete within %v: %w", s.ReadTimeout, err)
		}
		return nil, err
	}
	// Keep a moderate buffer for the next frame, not a huge one.
	if cap(body) <= 4<<20 {
		c.buf = body[:0]
	} else {
		c.buf = nil
	}
	return c.dec.Decode(body)
}

// deadline sets the read deadline, then checks for cancellation: the
// AfterFunc of serve sets a past deadline after cancelling, so whichever
// runs last, a cancelled connection does not block.
func (c *serverConn) deadline(d time.Time) error {
	if err := c.nc.SetReadDeadline(d); err != nil {
		return err
	}
	return context.Cause(c.ctx)
}

// errorWriteTimeout bounds writing an error frame to a peer we are about to
// drop.
const errorWriteTimeout = time.Second

func (c *serverConn) send(m Message) error {
	f, err := c.enc.Encode(m)
	if err != nil {
		return err
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.ReadTimeout))
	_, err = c.nc.Write(f)
	return err
}

func (c *serverConn) sendError(code, msg string) {
	if len(msg) > DefaultMaxString {
		msg = msg[:DefaultMaxString]
	}
	f, err := c.enc.Encode(&Error{Code: code, Message: msg})
	if err != nil {
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(errorWriteTimeout))
	c.nc.Write(f) // best effort: the connection closes next
}

// negotiate returns the highest major version in both [cmin, cmax] and
// [smin, smax].
func negotiate(cmin, cmax, smin, smax uint16) (uint16, bool) {
	hi := min(cmax, smax)
	if hi < max(cmin, smin) {
		return 0, false
	}
	return hi, true
}
