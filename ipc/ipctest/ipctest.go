// Package ipctest holds test doubles for package ipc: a recording Handler
// whose state outlives servers (as a store outlives the API server), a
// Proxy that cuts connections mid-frame, a raw connection for speaking the
// protocol by hand, and builders of valid and hostile frames.
//
// It imports ipc, pkg/record and the msgpack library only.
package ipctest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// SocketPath returns a path for a Unix socket in a new temporary
// directory, removed at cleanup. It is short: t.TempDir() paths can exceed
// the 108 bytes of sun_path.
func SocketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ipc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// Instance is what a Handler holds for one capturer instance.
type Instance struct {
	LastSeq uint64
	// Flows is the latest record of each flow id, active or final.
	Flows map[string]record.Flow
	// Samples are every sample applied, in order.
	Samples []record.PacketSample
	// Stats and Dropped are from the last batch applied.
	Stats   record.CaptureStats
	Dropped ipc.DropStats
	// Seqs are the seqs applied, in order; Twice the seqs applied a second
	// time (at-most-once says: none).
	Seqs  []uint64
	Twice []uint64
	// DoneSeqs are the seqs of the batches applied with Done set.
	DoneSeqs []uint64
	// Peer is the peer of the last batch applied.
	Peer ipc.Peer
}

// Totals returns the packets and bytes, both directions, summed over the
// latest record of each flow.
func (in *Instance) Totals() (packets, bytes uint64) {
	for _, f := range in.Flows {
		packets += f.PacketsSent + f.PacketsReceived
		bytes += f.BytesSent + f.BytesReceived
	}
	return packets, bytes
}

// Handler is an ipc.Handler that commits into memory. Use one Handler
// across server restarts: its LastSeq then survives them as a store's
// does. Safe for concurrent use.
type Handler struct {
	// BeforeApply, if set, runs at the start of each Apply; an error fails
	// the Apply with nothing committed. It must be set before use.
	BeforeApply func(ctx context.Context, peer ipc.Peer, b *ipc.Batch) error

	mu        sync.Mutex
	instances map[string]*Instance
	changed   chan struct{} // closed and replaced on each commit
}

// Apply commits b: each record of Flows, then of Ended, replaces the
// previous record of its flow id.
func (h *Handler) Apply(ctx context.Context, peer ipc.Peer, b *ipc.Batch) error {
	if h.BeforeApply != nil {
		if err := h.BeforeApply(ctx, peer, b); err != nil {
			return err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.instance(peer.Hello.InstanceID)
	if slices.Contains(in.Seqs, b.Seq) {
		in.Twice = append(in.Twice, b.Seq)
	}
	in.Seqs = append(in.Seqs, b.Seq)
	if b.Done {
		in.DoneSeqs = append(in.DoneSeqs, b.Seq)
	}
	in.LastSeq = max(in.LastSeq, b.Seq)
	for _, f := range b.Flows {
		in.Flows[f.ID] = f
	}
	for _, f := range b.Ended {
		in.Flows[f.ID] = f
	}
	in.Samples = append(in.Samples, b.Samples...)
	in.Stats = b.Stats
	in.Stats.DecodeErrors = maps.Clone(b.Stats.DecodeErrors) // the decoder reuses its map
	in.Dropped = b.Dropped
	in.Peer = peer
	h.signal()
	return nil
}

// LastSeq returns the last seq applied for id.
func (h *Handler) LastSeq(_ context.Context, id string) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if in, ok := h.instances[id]; ok {
		return in.LastSeq, nil
	}
	return 0, nil
}

// Instance returns a copy of what the handler holds for id.
func (h *Handler) Instance(id string) Instance {
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.instance(id)
	c := *in
	c.Flows = maps.Clone(in.Flows)
	c.Samples = slices.Clone(in.Samples)
	c.Seqs = slices.Clone(in.Seqs)
	c.Twice = slices.Clone(in.Twice)
	c.DoneSeqs = slices.Clone(in.DoneSeqs)
	return c
}

// Instances returns the ids of the instances the handler holds, sorted.
func (h *Handler) Instances() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(h.instances))
}

// WaitSeq waits until a batch with seq at least seq is applied for id, or
// ctx ends.
func (h *Handler) WaitSeq(ctx context.Context, id string, seq uint64) error {
	for {
		h.mu.Lock()
		last := h.instance(id).LastSeq
		ch := h.changedLocked()
		h.mu.Unlock()
		if last >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d of %s (last %d): %w", seq, id, last, ctx.Err())
		}
	}
}

func (h *Handler) instance(id string) *Instance {
	if h.instances == nil {
		h.instances = make(map[string]*Instance)
	}
	in, ok := h.instances[id]
	if !ok {
		in = &Instance{Flows: make(map[string]record.Flow)}
		h.instances[id] = in
	}
	return in
}

func (h *Handler) changedLocked() chan struct{} {
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

func (h *Handler) signal() {
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// Frame returns body behind its 4-byte big-endian length prefix.
func Frame(body []byte) []byte {
	f := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	return append(f, body...)
}

// Body returns a frame body built by the msgpack library from any value:
// the envelope [t, fields]. Use it to build frames this package's encoder
// would refuse to write.
func Body(t ipc.MsgType, fields any) []byte {
	b, err := msgpack.Marshal([]any{uint8(t), fields})
	if err != nil {
		panic(err)
	}
	return b
}

// Encode returns the frame of m, encoded by ipc.Encoder.
func Encode(t testing.TB, m ipc.Message) []byte {
	t.Helper()
	f, err := ipc.NewEncoder().Encode(m)
	if err != nil {
		t.Fatalf("encode %s: %v", m.Type(), err)
	}
	return slices.Clone(f)
}

// HelloFrame returns a valid hello for instance id.
func HelloFrame(t testing.TB, id string) []byte {
	return Encode(t, &ipc.Hello{VersionMin: 1, VersionMax: 1, InstanceID: id})
}

// HugeArrayBody returns a small batch body whose flows array claims n
// elements that are not there: a reader that trusts the count allocates n
// flow records.
func HugeArrayBody(n uint32) []byte {
	b := []byte{0x92, byte(ipc.TypeBatch), 0x82, 0xa3, 's', 'e', 'q', 0x01, 0xa5, 'f', 'l', 'o', 'w', 's', 0xdd}
	b = binary.BigEndian.AppendUint32(b, n)
	return append(b, 0x80) // one empty map, then nothing
}

// Conn is a raw client connection for speaking the protocol by hand.
type Conn struct {
	t testing.TB
	net.Conn
	dec *ipc.Decoder
}

// Dial connects to the socket at path; the connection closes at cleanup.
func Dial(t testing.TB, path string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	return Wrap(t, nc)
}

// Wrap makes a Conn of nc, for example a connection a test accepted; it
// closes at cleanup.
func Wrap(t testing.TB, nc net.Conn) *Conn {
	t.Cleanup(func() { nc.Close() })
	return &Conn{t: t, Conn: nc, dec: ipc.NewDecoder(ipc.Limits{})}
}

// Send writes b, ignoring errors: a hostile test's server may close first.
func (c *Conn) Send(b []byte) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write(b)
}

// Read reads one message, waiting at most d. The *Batch a Read returns is
// valid until the next Read.
func (c *Conn) Read(d time.Duration) (ipc.Message, error) {
	c.SetReadDeadline(time.Now().Add(d))
	body, err := ipc.ReadFrame(c.Conn, nil, ipc.DefaultMaxFrame)
	if err != nil {
		return nil, err
	}
	return c.dec.Decode(body)
}

// ReadError reads messages until an *ipc.Error and then the end of the
// connection, within d. It fails the test if either does not come.
func (c *Conn) ReadError(d time.Duration) *ipc.Error {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := c.Read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("read until error frame: %v", err)
		}
		if e, ok := m.(*ipc.Error); ok {
			if _, err := c.Read(time.Until(deadline)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatalf("connection still open after error frame %v (read: %v)", e, err)
			}
			return e
		}
	}
}

// Handshake sends a hello for id and returns the server's hello-ack.
func (c *Conn) Handshake(id string) *ipc.HelloAck {
	c.t.Helper()
	c.Send(HelloFrame(c.t, id))
	m, err := c.Read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read hello ack: %v", err)
	}
	a, ok := m.(*ipc.HelloAck)
	if !ok {
		c.t.Fatalf("got %#v, want hello_ack", m)
	}
	return a
}
