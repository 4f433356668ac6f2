package ipc_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
)

// wait bounds every wait of these tests.
const wait = 10 * time.Second

// testLogger logs through t, so that a failing test shows the server's
// account of it.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startServer starts a server on path with handler h, configured by
// opts, and closes it at cleanup.
func startServer(t testing.TB, path string, h ipc.Handler, opts ...func(*ipc.Server)) *ipc.Server {
	t.Helper()
	s := &ipc.Server{Path: path, Handler: h, Logger: testLogger(t)}
	for _, o := range opts {
		o(s)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { closeServer(t, s) })
	return s
}

func closeServer(t testing.TB, s *ipc.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close server: %v", err)
	}
}

func TestServer_Socket(t *testing.T) {
	t.Run("creates the directory 0750 and the socket 0660", func(t *testing.T) {
		path := filepath.Join(filepath.Dir(ipctest.SocketPath(t)), "run", "ls.sock")
		startServer(t, path, &ipctest.Handler{})
		di, err := os.Stat(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if got := di.Mode().Perm(); got != 0o750 {
			t.Errorf("directory mode %#o, want 0750", got)
		}
		si, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if si.Mode()&fs.ModeSocket == 0 || si.Mode().Perm() != 0o660 {
			t.Errorf("socket mode %v, want socket 0660", si.Mode())
		}
	})
	t.Run("custom mode", func(t *testing.T) {
		path := ipctest.SocketPath(t)
		startServer(t, path, &ipctest.Handler{}, func(s *ipc.Server) { s.Mode = 0o600 })
		si, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if si.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, want 0600", si.Mode())
		}
	})
	t.Run("a live server's socket is an error", func(t *testing.T) {
		path := ipctest.SocketPath(t)
		startServer(t, path, &ipctest.Handler{})
		s2 := &ipc.Server{Path: path, Handler: &ipctest.Handler{}}
		if err := s2.Start(t.Context()); !errors.Is(err, ipc.ErrSocketInUse) {
			s2.Close(t.Context())
			t.Fatalf("got %v, want ErrSocketInUse", err)
		}
		// The first server still serves.
		c := ipctest.Dial(t, path)
		c.Handshake("still-there")
	})
	t.Run("a dead server's socket is replaced", func(t *testing.T) {
		path := ipctest.SocketPath(t)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // as a crash would: the file stays, nobody listens
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("stale socket missing: %v", err)
		}
		startServer(t, path, &ipctest.Handler{})
		ipctest.Dial(t, path).Handshake("after-stale")
	})
	t.Run("a file that is not a socket is left alone", func(t *testing.T) {
		path := ipctest.SocketPath(t)
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &ipc.Server{Path: path, Handler: &ipctest.Handler{}}
		if err := s.Start(t.Context()); err == nil {
			s.Close(t.Context())
			t.Fatal("started over a regular file")
		}
		if b, _ := os.ReadFile(path); string(b) != "precious" {
			t.Errorf("file now holds %q", b)
		}
	})
	t.Run("close removes the socket", func(t *testing.T) {
		path := ipctest.SocketPath(t)
		s := &ipc.Server{Path: path, Handler: &ipctest.Handler{}}
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		closeServer(t, s)
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket after close: %v", err)
		}
	})
}

// TestServer_VersionNegotiation: overlapping ranges get the highest common
// version; disjoint ones an error frame naming the server's range, then
// the end of the connection.
func TestServer_VersionNegotiation(t *testing.T) {
	tests := []struct {
		name                   string
		cmin, cmax, smin, smax uint16
		want                   uint16 // 0: refused
	}{
		{"equal", 1, 1, 1, 1, 1},
		{"client newer", 1, 3, 1, 2, 2},
		{"server newer", 1, 2, 1, 4, 2},
		{"client only newer majors", 2, 3, 1, 1, 0},
		{"server only newer majors", 1, 1, 2, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ipctest.SocketPath(t)
			s := startServer(t, path, &ipctest.Handler{}, func(s *ipc.Server) { ipc.SetVersions(s, tt.smin, tt.smax) })
			c := ipctest.Dial(t, path)
			c.Send(ipctest.Encode(t, &ipc.Hello{VersionMin: tt.cmin, VersionMax: tt.cmax, InstanceID: "v"}))
			if tt.want == 0 {
				e := c.ReadError(wait)
				if e.Code != ipc.ErrCodeVersion || e.VersionMin != tt.smin || e.VersionMax != tt.smax {
					t.Errorf("got %+v, want a version error with range [%d, %d]", e, tt.smin, tt.smax)
				}
				if got := s.Stats().ProtocolErrors; got != 1 {
					t.Errorf("protocol errors %d, want 1", got)
				}
				return
			}
			m, err := c.Read(wait)
			if err != nil {
				t.Fatal(err)
			}
			if a, ok := m.(*ipc.HelloAck); !ok || a.Version != tt.want {
				t.Errorf("got %#v, want hello_ack version %d", m, tt.want)
			}
		})
	}
}

// TestServer_AcksOnlyCommittedBatchesOnce: a batch is acked after Apply
// returns nil; a resent one (seq <= last) is acked without applying, also
// by a new server over the same store; a failed Apply is not acked.
func TestServer_AcksOnlyCommittedBatchesOnce(t *testing.T) {
	path := ipctest.SocketPath(t)
	h := &ipctest.Handler{}
	var failNext sync.Mutex // held: the next Apply fails
	failing := false
	h.BeforeApply = func(context.Context, ipc.Peer, *ipc.Batch) error {
		failNext.Lock()
		defer failNext.Unlock()
		if failing {
			failing = false
			return errors.New("disk full")
		}
		return nil
	}
	s := startServer(t, path, h)

	c := ipctest.Dial(t, path)
	if a := c.Handshake("inst"); a.LastSeq != 0 || a.Version != ipc.ProtocolVersion {
		t.Fatalf("hello ack %+v, want version 1, last seq 0", a)
	}
	expectAck := func(c *ipctest.Conn, seq uint64) {
		t.Helper()
		m, err := c.Read(wait)
		if err != nil {
			t.Fatalf("read ack %d: %v", seq, err)
		}
		if a, ok := m.(*ipc.Ack); !ok || a.Seq != seq {
			t.Fatalf("got %#v, want ack %d", m, seq)
		}
	}
	c.Send(ipctest.Encode(t, ipctest.Batch(1, 2, 1, 3)))
	expectAck(c, 1)
	c.Send(ipctest.Encode(t, ipctest.Batch(1, 2, 1, 3))) // a resend
	expectAck(c, 1)
	c.Send(ipctest.Encode(t, ipctest.Batch(2, 1, 0, 0)))
	expectAck(c, 2)
	in := h.Instance("inst")
	if len(in.Seqs) != 2 || len(in.Samples) != 3 || len(in.Twice) != 0 {
		t.Errorf("applied seqs %v, %d samples; want [1 2], 3 samples", in.Seqs, len(in.Samples))
	}
	if st := s.Stats(); st.Batches != 2 || st.Duplicates != 1 {
		t.Errorf("stats %+v, want 2 batches, 1 duplicate", st)
	}
	if in.Peer.UID != os.Getuid() || in.Peer.PID != os.Getpid() || in.Peer.Hello.InstanceID != "inst" {
		t.Errorf("peer %+v, want this process", in.Peer)
	}

	// Apply fails: error frame, no ack, nothing committed.
	failNext.Lock()
	failing = true
	failNext.Unlock()
	c.Send(ipctest.Encode(t, ipctest.Batch(3, 1, 0, 0)))
	if e := c.ReadError(wait); e.Code != ipc.ErrCodeApply {
		t.Errorf("got %+v, want an apply error", e)
	}
	if got := h.Instance("inst").LastSeq; got != 2 {
		t.Errorf("last seq %d after a failed apply, want 2", got)
	}

	// A restarted server over the same store knows seq 2.
	closeServer(t, s)
	startServer(t, path, h)
	c2 := ipctest.Dial(t, path)
	if a := c2.Handshake("inst"); a.LastSeq != 2 {
		t.Fatalf("hello ack %+v after restart, want last seq 2", a)
	}
	c2.Send(ipctest.Encode(t, ipctest.Batch(2, 1, 0, 0)))
	expectAck(c2, 2)
	c2.Send(ipctest.Encode(t, ipctest.Batch(3, 1, 0, 0)))
	expectAck(c2, 3)
	if in := h.Instance("inst"); len(in.Twice) != 0 || len(in.Seqs) != 3 {
		t.Errorf("applied %v, twice %v; want [1 2 3] once each", in.Seqs, in.Twice)
	}
}

// TestServer_NewConnectionTakesOverInstance: a second connection of the
// same instance replaces the first, which is told and closed, before the
// second learns the last seq.
func TestServer_NewConnectionTakesOverInstance(t *testing.T) {
	path := ipctest.SocketPath(t)
	h := &ipctest.Handler{}
	startServer(t, path, h)
	c1 := ipctest.Dial(t, path)
	c1.Handshake("same")
	c1.Send(ipctest.Encode(t, ipctest.Batch(1, 1, 0, 0)))
	if _, err := c1.Read(wait); err != nil {
		t.Fatal(err)
	}
	c2 := ipctest.Dial(t, path)
	if a := c2.Handshake("same"); a.LastSeq != 1 {
		t.Errorf("hello ack %+v, want last seq 1", a)
	}
	if e := c1.ReadError(wait); e.Code != ipc.ErrCodeReplaced {
		t.Errorf("old connection got %+v, want replaced", e)
	}
	// Another instance is not affected.
	c3 := ipctest.Dial(t, path)
	c3.Handshake("other")
	c2.Send(ipctest.Encode(t, ipctest.Batch(2, 1, 0, 0)))
	if m, err := c2.Read(wait); err != nil || m.(*ipc.Ack).Seq != 2 {
		t.Fatalf("got %v, %v; want ack 2", m, err)
	}
}

func TestServer_MaxConns(t *testing.T) {
	path := ipctest.SocketPath(t)
	s := startServer(t, path, &ipctest.Handler{}, func(s *ipc.Server) { s.MaxConns = 2 })
	a := ipctest.Dial(t, path)
	a.Handshake("a")
	b := ipctest.Dial(t, path)
	b.Handshake("b")
	c := ipctest.Dial(t, path)
	if e := c.ReadError(wait); e.Code != ipc.ErrCodeBusy {
		t.Errorf("got %+v, want busy", e)
	}
	if got := s.Stats().Rejected; got != 1 {
		t.Errorf("rejected %d, want 1", got)
	}
	// A slot frees when a connection ends. The server closes the socket
	// after it forgets the connection, so once a sees the end, it is free.
	a.Send([]byte{0, 0, 0, 1, 0xc1})
	a.ReadError(wait)
	ipctest.Dial(t, path).Handshake("d")
}

// TestServer_CloseCancelsApply: Close cancels a running Apply, tells the
// client and returns in bounded time.
func TestServer_CloseCancelsApply(t *testing.T) {
	path := ipctest.SocketPath(t)
	entered := make(chan struct{})
	h := &ipctest.Handler{BeforeApply: func(ctx context.Context, _ ipc.Peer, _ *ipc.Batch) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}}
	s := startServer(t, path, h)
	c := ipctest.Dial(t, path)
	c.Handshake("slow")
	c.Send(ipctest.Encode(t, ipctest.Batch(1, 1, 0, 0)))
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("Apply not called")
	}
	closeServer(t, s)
	if e := c.ReadError(wait); e.Code != ipc.ErrCodeShutdown {
		t.Errorf("got %+v, want shutdown", e)
	}
	if got := h.Instance("slow").LastSeq; got != 0 {
		t.Errorf("last seq %d, want 0", got)
	}
}
