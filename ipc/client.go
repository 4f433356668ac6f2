package ipc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// Client delivers batches to a Server: it dials (it listens on nothing),
// reconnects with exponential backoff and jitter, and keeps every batch
// until the server acknowledges it, resending after a reconnect. Send never
// blocks on the network and never lets the pending bytes exceed
// MaxPendingBytes (see Send for what gives way).
//
// Set the fields, then call Start; do not change them afterwards. Send,
// Stats and Close are safe for concurrent use.
type Client struct {
	// Path is the server's socket. Required.
	Path string
	// Hello describes this capture. Zero versions mean ProtocolVersion;
	// an empty InstanceID gets a random one, an empty Hostname
	// os.Hostname. InstanceID must be new each time the process starts.
	Hello Hello
	// MaxPendingBytes bounds the encoded bytes of unacknowledged batches
	// (default 4 MiB).
	MaxPendingBytes int
	// MaxBatchBytes is the largest frame the client sends; larger batches
	// are split into several (default 1 MiB, at least 64 KiB, at most
	// DefaultMaxFrame).
	MaxBatchBytes int
	// MinBackoff and MaxBackoff bound the wait between connection attempts
	// (defaults 100 ms and 5 s). The wait doubles after each failure and
	// is jittered down by up to half.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds connecting and the hello exchange (default 5 s).
	DialTimeout time.Duration
	// AckTimeout is how long a sent batch may wait for its acknowledgement
	// before the client drops the connection and reconnects (default 30 s).
	AckTimeout time.Duration
	// Logger receives connection events (default: discard).
	Logger *slog.Logger

	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	notify chan struct{} // wakes the writer; capacity 1

	mu           sync.Mutex
	started      bool
	closing      bool
	queue        []*pending // ordered by seq
	pendingBytes int
	nextSeq      uint64
	ackedSeq     uint64
	dropped      DropStats
	enc          *Encoder
	dec          *Decoder
	connected    bool
	sessions     uint64
	lastErr      error
	changed      chan struct{} // closed and replaced when the queue shrinks
	lastPressure time.Time     // last log of the pending bound
}

// pending is one encoded, unacknowledged batch frame.
type pending struct {
	seq     uint64
	frame   []byte
	samples int
	// sent is set when the frame is written, and cleared by the next
	// hello-ack, which says whether the server applied it. Until then the
	// frame may have been applied, so it is never changed.
	sent   bool
	sentAt time.Time
}

// ClientStats is a snapshot of a Client.
type ClientStats struct {
	InstanceID     string
	Connected      bool
	Sessions       uint64 // connections that completed the hello
	LastSeq        uint64 // highest seq assigned
	AckedSeq       uint64 // highest seq acknowledged
	PendingBatches int
	PendingBytes   int
	Dropped        DropStats
	LastError      error // of the last failed connection attempt or session
}

// Start validates the configuration and starts connecting in the
// background. It does not wait for the server.
func (c *Client) Start(ctx context.Context) error {
	if c.Path == "" {
		return errors.New("ipc client: no socket path")
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 4 << 20
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.MaxBatchBytes < 64<<10 || c.MaxBatchBytes > DefaultMaxFrame {
		return fmt.Errorf("ipc client: MaxBatchBytes %d outside [64 KiB, %d]", c.MaxBatchBytes, DefaultMaxFrame)
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 30 * time.Second
	}
	h := &c.Hello
	if h.VersionMin == 0 {
		h.VersionMin = ProtocolVersion
	}
	if h.VersionMax == 0 {
		h.VersionMax = ProtocolVersion
	}
	if h.VersionMin > h.VersionMax {
		return fmt.Errorf("ipc client: version range [%d, %d]", h.VersionMin, h.VersionMax)
	}
	if h.InstanceID == "" {
		var b [16]byte
		rand.Read(b[:])
		h.InstanceID = hex.EncodeToString(b[:])
	}
	if h.Hostname == "" {
		h.Hostname, _ = os.Hostname()
	}
	if _, err := NewEncoder().Encode(h); err != nil {
		return fmt.Errorf("ipc client: hello: %w", err)
	}
	c.log = c.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "ipc", "socket", c.Path, "instance_id", h.InstanceID)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("ipc client: already started")
	}
	c.started = true
	c.nextSeq = 1
	c.enc = NewEncoder()
	c.dec = NewDecoder(Limits{})
	c.changed = make(chan struct{})
	c.notify = make(chan struct{}, 1)
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.wg.Add(1)
	go c.run()
	return nil
}

// Send queues b for delivery and returns at once; it never waits for the
// network. The client assigns b's sequence numbers and Dropped counters
// (values set by the caller are ignored), and keeps no reference to b: the
// caller may reuse it when Send returns.
//
// A batch larger than MaxBatchBytes is split into several. When the pending
// bytes would exceed MaxPendingBytes, the client makes room among the
// batches not yet written on the current connection, in this order, until
// the new batch fits:
//  1. drop the packet samples of the oldest pending batches, then of b;
//  2. coalesce the pending batches and b into one: the latest record of each
//     flow, every ended flow, the latest stats (no flow counter is lost:
//     they are cumulative);
//  3. drop records of active flows, least recently seen first (their next
//     record carries their counters);
//  4. drop ended flows, least recently seen first (their counters are lost);
//  5. drop what is left of b (stats only; the next batch carries them).
//
// Everything dropped is counted in the Dropped of the next batch. A batch
// with Done keeps its mark through all of this: split, it goes on the
// last frame; coalesced, on the batch that results; and at step 5 its
// stats and Done are queued without records, beyond the bound if need
// be, since no next batch will carry them. Send
// returns ErrClosed after Close, and an error wrapping ErrInvalid or
// ErrTooLarge for a batch that breaks the limits (a flow without id, a
// string over DefaultMaxString); such a batch is not queued.
func (c *Client) Send(b *Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return errors.New("ipc client: send before start")
	}
	if c.closing {
		return ErrClosed
	}
	nb := *b // shallow: the slices stay the caller's and are only read
	entries, size, err := c.encode(&nb, c.nextSeq)
	if err != nil {
		return fmt.Errorf("ipc send: %w", err)
	}
	if c.pendingBytes+size > c.MaxPendingBytes {
		entries, size, err = c.relieve(&nb, entries, size)
		if err != nil {
			return fmt.Errorf("ipc send: %w", err)
		}
	}
	c.queue = append(c.queue, entries...)
	c.pendingBytes += size
	if len(entries) > 0 {
		c.nextSeq = entries[len(entries)-1].seq + 1
	}
	c.wake()
	return nil
}

// encode encodes b, with the current Dropped counters, as frames numbered
// from seq. It returns the frames and their total size.
func (c *Client) encode(b *Batch, seq uint64) ([]*pending, int, error) {
	b.Dropped = c.dropped
	var out []*pending
	size := 0
	_, err := c.enc.encodeBatch(b, seq, c.MaxBatchBytes, DefaultMaxRecords, func(seq uint64, f []byte, samples int) error {
		out = append(out, &pending{seq: seq, frame: append([]byte(nil), f...), samples: samples})
		size += len(f)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, size, nil
}

func (c *Client) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the client.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ClientStats{
		InstanceID:     c.Hello.InstanceID,
		Connected:      c.connected,
		Sessions:       c.sessions,
		LastSeq:        c.nextSeq - min(c.nextSeq, 1),
		AckedSeq:       c.ackedSeq,
		PendingBatches: len(c.queue),
		PendingBytes:   c.pendingBytes,
		Dropped:        c.dropped,
		LastError:      c.lastErr,
	}
}

// Close stops accepting batches and waits, within ctx, until the server has
// acknowledged every pending batch (reconnecting as needed); then it closes
// the connection and stops. If ctx ends first, it stops anyway and returns
// an error saying how many batches were not acknowledged.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if !c.started {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	c.wake()
	c.mu.Unlock()
	var err error
	for {
		c.mu.Lock()
		n, ch := len(c.queue), c.changed
		c.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
			err = fmt.Errorf("close ipc client with %d batches unacknowledged: %w", n, ctx.Err())
		case <-c.ctx.Done():
			err = fmt.Errorf("close ipc client with %d batches unacknowledged: %w", n, context.Cause(c.ctx))
		}
		break
	}
	c.cancel()
	c.wg.Wait()
	return err
}

// run connects, serves sessions and backs off between them until the
// client's context ends.
func (c *Client) run() {
	defer c.wg.Done()
	backoff := c.MinBackoff
	failures := 0
	var lastLog time.Time
	for {
		established, err := c.session()
		if c.ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		var perr *Error
		if errors.As(err, &perr) && (perr.Code == ErrCodeVersion || perr.Code == ErrCodeForbidden) {
			// Only an operator fixes these: retry slowly.
			backoff = c.MaxBackoff
		}
		if established {
			backoff, failures = c.MinBackoff, 0
			c.log.Warn("ipc connection lost", "err", err)
		} else {
			failures++
			// A repeating failure is logged once per interval, with a count.
			if failures == 1 || time.Since(lastLog) >= 30*time.Second {
				c.log.Warn("ipc server unreachable", "err", err, "failures", failures,
					"pending_batches", c.Stats().PendingBatches)
				lastLog = time.Now()
			}
		}
		wait := backoff/2 + mrand.N(backoff/2+1)
		backoff = min(2*backoff, c.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
	}
}

// session runs one connection: dial, hello, then write pending batches and
// read acks until something fails. established reports whether the hello
// was acknowledged.
func (c *Client) session() (established bool, err error) {
	ctx := c.ctx
	d := net.Dialer{Timeout: c.DialTimeout}
	nc, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	// Cancelling the client unblocks any read or write.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	enc := NewEncoder()
	dec := NewDecoder(Limits{})
	nc.SetDeadline(time.Now().Add(c.DialTimeout))
	f, err := enc.Encode(&c.Hello)
	if err != nil {
		return false, err
	}
	if _, err := nc.Write(f); err != nil {
		// A server that refuses us (forbidden, busy) may have written why
		// and closed before our hello went out: read the why.
		if body, rerr := ReadFrame(nc, nil, DefaultMaxFrame); rerr == nil {
			if m, derr := dec.Decode(body); derr == nil {
				if e, ok := m.(*Error); ok {
					return false, e
				}
			}
		}
		return false, fmt.Errorf("send hello: %w", err)
	}
	body, err := ReadFrame(nc, nil, DefaultMaxFrame)
	if err != nil {
		return false, fmt.Errorf("read hello ack: %w", err)
	}
	m, err := dec.Decode(body)
	if err != nil {
		return false, fmt.Errorf("read hello ack: %w", err)
	}
	var ack *HelloAck
	switch m := m.(type) {
	case *HelloAck:
		ack = m
	case *Error:
		return false, m
	default:
		return false, fmt.Errorf("%s instead of hello_ack: %w", m.Type(), ErrMalformed)
	}
	if ack.Version < c.Hello.VersionMin || ack.Version > c.Hello.VersionMax {
		return false, fmt.Errorf("server chose version %d outside [%d, %d]: %w",
			ack.Version, c.Hello.VersionMin, c.Hello.VersionMax, ErrMalformed)
	}
	nc.SetDeadline(time.Time{})
	c.helloAcked(ack.LastSeq)
	c.log.Info("ipc connected", "proto_version", ack.Version, "last_seq", ack.LastSeq)
	defer func() {
		c.mu.Lock()
		c.connected = false
		c.mu.Unlock()
	}()

	// The reader applies acks until the connection fails.
	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		readErr = c.readAcks(nc, dec)
	}()
	defer func() {
		nc.Close()
		<-readDone
		if err == nil {
			err = readErr
		}
	}()

	tick := time.NewTicker(c.AckTimeout / 4)
	defer tick.Stop()
	for {
		c.mu.Lock()
		var next *pending
		for _, p := range c.queue {
			if !p.sent {
				next = p
				break
			}
		}
		var oldest time.Time
		if next != nil {
			next.sent, next.sentAt = true, time.Now()
		} else if len(c.queue) > 0 {
			oldest = c.queue[0].sentAt
		}
		c.mu.Unlock()

		if next != nil {
			nc.SetWriteDeadline(time.Now().Add(c.AckTimeout))
			if _, err := nc.Write(next.frame); err != nil {
				return true, fmt.Errorf("send batch %d: %w", next.seq, err)
			}
			continue
		}
		select {
		case <-c.notify:
		case <-readDone:
			return true, readErr
		case <-ctx.Done():
			return true, ctx.Err()
		case now := <-tick.C:
			if !oldest.IsZero() && now.Sub(oldest) > c.AckTimeout {
				return true, fmt.Errorf("no ack for batch %d within %v", c.Stats().AckedSeq+1, c.AckTimeout)
			}
		}
	}
}

// helloAcked applies a hello-ack: batches up to lastSeq are committed, the
// rest were not applied and may change again.
func (c *Client) helloAcked(lastSeq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected = true
	c.sessions++
	if lastSeq >= c.nextSeq {
		// The server has seqs this client never assigned: the instance id
		// was reused by another run. Renumber, or everything would be
		// taken for a duplicate.
		c.log.Error("ipc server knows seqs beyond this client's: instance id reused; renumbering",
			"server_last_seq", lastSeq, "client_next_seq", c.nextSeq)
		c.renumber(lastSeq + 1)
	}
	c.ackLocked(lastSeq)
	for _, p := range c.queue {
		p.sent = false
	}
}

// renumber gives the pending batches seqs from seq on.
func (c *Client) renumber(seq uint64) {
	queue := c.queue
	c.queue, c.pendingBytes = nil, 0
	for _, p := range queue {
		b := c.decodeOwn(p)
		entries, size, err := c.encode(b, seq)
		if err != nil {
			panic(fmt.Sprintf("ipc: re-encode own frame: %v", err)) // a bug of this package
		}
		c.queue = append(c.queue, entries...)
		c.pendingBytes += size
		seq = entries[len(entries)-1].seq + 1
	}
	c.nextSeq = seq
}

// decodeOwn decodes a frame this client encoded.
func (c *Client) decodeOwn(p *pending) *Batch {
	b := new(Batch)
	if _, err := c.dec.decode(p.frame[headerLen:], b); err != nil {
		panic(fmt.Sprintf("ipc: decode own frame: %v", err)) // a bug of this package
	}
	return b
}

// readAcks reads the server's frames until the connection fails.
func (c *Client) readAcks(nc net.Conn, dec *Decoder) error {
	var buf []byte
	for {
		body, err := ReadFrame(nc, buf, DefaultMaxFrame)
		if err != nil {
			return err
		}
		buf = body[:0]
		m, err := dec.Decode(body)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *Ack:
			c.mu.Lock()
			c.ackLocked(m.Seq)
			c.mu.Unlock()
		case *Error:
			return m
		default:
			return fmt.Errorf("unexpected %s from server: %w", m.Type(), ErrMalformed)
		}
	}
}

// ackLocked forgets the batches up to seq.
func (c *Client) ackLocked(seq uint64) {
	n := 0
	for n < len(c.queue) && c.queue[n].seq <= seq {
		c.pendingBytes -= len(c.queue[n].frame)
		n++
	}
	if n > 0 {
		clear(c.queue[:n])
		c.queue = c.queue[n:]
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.ackedSeq = max(c.ackedSeq, seq)
}
