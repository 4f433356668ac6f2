package capturer

import (
	"context"
	"io"
	"syscall"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
)

// Stream is a capture read as it is written: standard input, a pipe or a
// FIFO, fed by a writer such as "tcpdump -U -w -" that may pause for any
// time and ends the capture by closing its end. Open it with OpenStream,
// read it once with ReadStream, then Close it.
type Stream struct {
	in    *streamReader
	src   capture.Source
	input io.Closer
}

// OpenStream opens a stream: open returns its input (and may block, as
// opening a FIFO does until a writer opens it), then the capture header is
// read from it (pcap or pcapng, possibly gzip-compressed, as
// capture.OpenReader reads them). Both wait for the writer; a cancelled ctx
// ends the wait and OpenStream returns ctx.Err() at once, leaving the
// blocked call to finish on its own goroutine, which then closes the input
// and touches nothing else.
//
// The Stream owns the input: Close closes it.
func OpenStream(ctx context.Context, open func() (io.ReadCloser, error)) (*Stream, error) {
	type result struct {
		s   *Stream
		err error
	}
	opened := make(chan result) // unbuffered: exactly one side owns the Stream
	abandoned := make(chan struct{})
	go func() {
		input, err := open()
		if err != nil {
			opened <- result{err: err}
			return
		}
		in := newStreamReader(input)
		src, err := capture.OpenReader(in)
		if err != nil {
			input.Close()
			opened <- result{err: err}
			return
		}
		s := &Stream{in: in, src: src, input: input}
		select {
		case opened <- result{s: s}:
		case <-abandoned:
			s.Close()
		}
	}()
	select {
	case r := <-opened:
		return r.s, r.err
	case <-ctx.Done():
		close(abandoned)
		return nil, ctx.Err()
	}
}

// Close closes the stream's input. It may be called while ReadStream's
// reading goroutine, left behind after a cancellation, is still blocked in
// a read of it (the input's Close must allow that, as an *os.File's and an
// io.PipeReader's do): it never touches the parser that goroutine owns.
func (s *Stream) Close() error {
	return s.input.Close()
}

// ReadStream is ReadFile for a Stream, which it reads once. It differs in
// three ways, so that flows and statistics reach the sink as the stream
// runs and a signal stops it at once:
//
//   - Before a read of the input that may block until the writer writes
//     (the input holds no byte, or cannot tell), the reading goroutine
//     hands the packets it holds to the flow table, however few; a file
//     hands them over 512 at a time.
//   - pr runs every pr.Interval on the wall clock even while no packet
//     comes. Flows still end on packet time, as in a file.
//   - Cancelling ctx makes it return nil at once, without waiting for the
//     reading goroutine, which may be blocked in a read that only the
//     writer (or Close) can end; that goroutine touches nothing of the
//     caller's meanwhile, and stops once the read returns.
//
// Like ReadFile it ends every flow before it returns; it returns nil when
// the writer closes the stream, or the error that stopped reading.
func ReadStream(ctx context.Context, s *Stream, p *Pipeline, pr *Periodic) error {
	return readParallel(ctx, s.src, p, pr, s.in)
}

// streamReader is the input of a Stream's parser. Before a read of the
// stream that may block, it calls idle, the reading goroutine's
// reader.handOver (nil while the header is read); an error from idle is
// returned without reading.
type streamReader struct {
	r    io.Reader
	idle func() error
	// file is r when it can tell the bytes it holds (an *os.File), nil
	// when it cannot: every read may then block.
	file syscall.Conn
}

// newStreamReader returns the reader of stream r.
func newStreamReader(r io.Reader) *streamReader {
	s := &streamReader{r: r}
	if f, ok := r.(syscall.Conn); ok {
		s.file = f
	}
	return s
}

func (s *streamReader) Read(b []byte) (int, error) {
	if s.idle != nil && !s.ready() {
		if err := s.idle(); err != nil {
			return 0, err
		}
	}
	return s.r.Read(b)
}

// ready reports whether the input holds bytes, so that a read returns
// them at once. A stream read as fast as it is written (cat FILE |) then
// goes across in whole batches, not in a batch per read of the pipe,
// which cost a fifth of its speed.
func (s *streamReader) ready() bool {
	if s.file == nil {
		return false
	}
	n, err := capture.Readable(s.file)
	if err != nil {
		s.file = nil // it will not tell next time either
		return false
	}
	return n > 0
}
