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
// at the end.
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

// ReadFile runs every frame of src through p, then ends every flow (end
// reason "eof"). It returns nil at the end of the file, or the error that
// stopped reading (a corrupt record): the frames before it are counted.
func ReadFile(ctx context.Context, src capture.Source, p *Pipeline) error {
	defer p.Table().Flush()
	for n := 0; ; n++ {
		if n&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		data, info, err := src.ReadPacket()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		p.Packet(data, &info)
	}
}

// ReadLive runs frames of a live source through p until ctx is done, then
// ends every flow. While no packet arrives it advances the table's clock
// with now, so idle flows still end. About once a second it reads the
// source's kernel counters, which keeps their accumulation exact (the
// kernel's own counters are 32-bit and reset on each read).
func ReadLive(ctx context.Context, src capture.Source, p *Pipeline, now func() time.Time) error {
	defer p.Table().Flush()
	lastPoll := now()
	poll := func(t time.Time) {
		if t.Sub(lastPoll) >= time.Second {
			lastPoll = t
			_, _ = src.Stats()
		}
	}
	done := ctx.Done()
	for n := 1; ; n++ {
		data, info, err := src.ReadPacket()
		if err != nil {
			if errors.Is(err, capture.ErrTimeout) {
				if ctx.Err() != nil {
					return nil
				}
				t := now()
				p.Table().Advance(t.UnixNano())
				poll(t)
				continue
			}
			return fmt.Errorf("read packet: %w", err)
		}
		p.Packet(data, &info)
		select {
		case <-done:
			return nil
		default:
		}
		if n&0x1fff == 0 {
			poll(now())
		}
	}
}

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

// StatsWithKernel merges the source's kernel counters into s.
func StatsWithKernel(s record.CaptureStats, src capture.Source) record.CaptureStats {
	if ks, err := src.Stats(); err == nil {
		s.KernelReceived, s.KernelDrops = ks.Received, ks.Dropped
	}
	return s
}
