package capturer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// JSONLWriter writes each ended flow as one JSON object per line (the
// record of DESIGN.md), without allocating per flow. It buffers; call Flush
// at the end. (Formatting on a goroutine of its own gained nothing offline
// and cost CPU live, in scheduler wake-ups.)
type JSONLWriter struct {
	w   *bufio.Writer
	buf []byte
	err error
}

// NewJSONLWriter returns a writer of flow records to w.
func NewJSONLWriter(w io.Writer) *JSONLWriter {
	return &JSONLWriter{w: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 0, 1024)}
}

// Write writes one flow; the first error sticks.
func (j *JSONLWriter) Write(f *flow.Flow) {
	if j.err != nil {
		return
	}
	j.buf = append(f.AppendJSON(j.buf[:0]), '\n')
	_, j.err = j.w.Write(j.buf)
}

// Flush flushes the buffer and returns the first error.
func (j *JSONLWriter) Flush() error {
	if j.err != nil {
		return j.err
	}
	return j.w.Flush()
}

// Periodic is work the read loop does between packets, on the wall clock:
// Flush every Interval, and at once when Due reports true (checked every
// 1024 packets). Both run on the capture goroutine, which owns the table.
// Live and reading a Stream, Flush runs on time while no packet comes too.
type Periodic struct {
	Interval time.Duration
	Now      func() time.Time
	Flush    func()
	Due      func() bool

	last time.Time
}

func (pr *Periodic) tick(force bool) {
	if pr == nil || pr.Flush == nil {
		return
	}
	t := pr.Now()
	if force || (pr.Due != nil && pr.Due()) || (pr.Interval > 0 && t.Sub(pr.last) >= pr.Interval) {
		pr.last = t
		pr.Flush()
	}
}

// untilDue returns the time until the next flush by Interval, at least a
// millisecond.
func (pr *Periodic) untilDue() time.Duration {
	return max(pr.Interval-pr.Now().Sub(pr.last), time.Millisecond)
}

// ReadFile runs every frame of src through p, then ends every flow (end
// reason "eof"). It returns nil at the end of the file, or the error that
// stopped reading (a corrupt record): the frames before it are counted.
// Reading and decoding run on a goroutine of their own, beside the flow
// table's (the caller's). pr may be nil.
func ReadFile(ctx context.Context, src capture.Source, p *Pipeline, pr *Periodic) error {
	return readParallel(ctx, src, p, pr, nil)
}

var nowFunc = time.Now

// ReadLive runs frames of a live source through p until ctx is done, then
// ends every flow. While no packet arrives it advances the table's clock
// with now, so idle flows still end. About once a second it reads the
// source's kernel counters, which keeps their accumulation exact (the
// kernel's own counters are 32-bit and reset on each read). pr may be nil.
func ReadLive(ctx context.Context, src capture.Source, p *Pipeline, now func() time.Time, pr *Periodic) error {
	defer p.Table().Flush()
	lastPoll := now()
	if pr != nil {
		if pr.Now == nil {
			pr.Now = now
		}
		pr.last = lastPoll
	}
	poll := func(t time.Time) {
		if t.Sub(lastPoll) >= time.Second {
			lastPoll = t
			_, _ = src.Stats()
		}
	}
	// After ctx is cancelled the loop drains: packets the kernel already
	// holds (in blocks it retires within its block timeout) are still
	// counted, until a poll finds nothing or drainFor has passed.
	done := ctx.Done()
	var drainUntil time.Time
	for n := 1; ; n++ {
		data, info, err := src.ReadPacket()
		if err != nil {
			if errors.Is(err, capture.ErrTimeout) {
				if ctx.Err() != nil {
					// Return after a whole poll that began after the
					// cancel found nothing: a packet that arrived just
					// before it sat in a block not yet retired.
					if done == nil {
						return nil
					}
					done, drainUntil = nil, now().Add(drainFor)
					continue
				}
				t := now()
				p.Table().Advance(t.UnixNano())
				poll(t)
				pr.tick(false)
				continue
			}
			return fmt.Errorf("read packet: %w", err)
		}
		p.Packet(data, &info)
		if done != nil {
			select {
			case <-done:
				done, drainUntil = nil, now().Add(drainFor)
			default:
			}
		} else if now().After(drainUntil) {
			return nil
		}
		if n&0x3ff == 0 {
			t := now()
			poll(t)
			pr.tick(false)
		}
	}
}

// drainFor bounds how long ReadLive keeps reading after its context is
// cancelled, should packets keep arriving.
const drainFor = time.Second

// LocalSet returns a predicate for the given addresses.
func LocalSet(addrs []netip.Addr) func(netip.Addr) bool {
	m := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		m[a.Unmap()] = struct{}{}
	}
	return func(a netip.Addr) bool {
		_, ok := m[a.Unmap()]
		return ok
	}
}

// StatsWithKernel merges the source's kernel counters into s. src may be
// nil (a Stream, which has none).
func StatsWithKernel(s record.CaptureStats, src capture.Source) record.CaptureStats {
	if src == nil {
		return s
	}
	if ks, err := src.Stats(); err == nil {
		s.KernelReceived, s.KernelDrops = ks.Received, ks.Dropped
	}
	return s
}
