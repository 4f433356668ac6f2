package ipc_test

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
)

// TestServer_HostileInput: each hostile connection gets an error frame
// naming the problem and is closed, alone: a well-behaved client on the
// same server keeps getting its batches committed, also while a hostile
// peer stalls.
func TestServer_HostileInput(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	path := ipctest.SocketPath(t)
	h := &ipctest.Handler{}
	s := startServer(t, path, h, func(s *ipc.Server) { s.ReadTimeout = readTimeout })

	good := ipctest.Dial(t, path)
	good.Handshake("good")
	seq := uint64(0)
	goodBatch := func() {
		t.Helper()
		seq++
		good.Send(ipctest.Encode(t, ipctest.Batch(seq, 5, 1, 2)))
		m, err := good.Read(wait)
		if err != nil {
			t.Fatalf("good client: %v", err)
		}
		if a, ok := m.(*ipc.Ack); !ok || a.Seq != seq {
			t.Fatalf("good client got %#v, want ack %d", m, seq)
		}
	}
	hello := func(c *ipctest.Conn) { c.Handshake("hostile") }
	header := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 3000)
	for i := range garbage {
		garbage[i] = byte(rnd.Uint32())
	}
	helloFrame := ipctest.HelloFrame(t, "hostile")

	tests := []struct {
		name  string
		send  func(c *ipctest.Conn)
		code  string
		stall bool // the server must wait ReadTimeout
	}{
		{name: "length prefix of 4 GiB", send: func(c *ipctest.Conn) {
			c.Send(append(header(0xffffffff), garbage...))
		}, code: ipc.ErrCodeTooLarge},
		{name: "length prefix one over MaxFrame", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(header(ipc.DefaultMaxFrame + 1))
		}, code: ipc.ErrCodeTooLarge},
		{name: "text instead of frames", send: func(c *ipctest.Conn) {
			c.Send([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, code: ipc.ErrCodeTooLarge},
		{name: "garbage body", send: func(c *ipctest.Conn) {
			c.Send(ipctest.Frame(garbage))
		}, code: ipc.ErrCodeProtocol},
		{name: "garbage body after hello", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(ipctest.Frame(garbage[:100]))
		}, code: ipc.ErrCodeProtocol},
		{name: "nothing at all", send: func(c *ipctest.Conn) {}, code: ipc.ErrCodeTimeout, stall: true},
		{name: "truncated hello, then stall", send: func(c *ipctest.Conn) {
			c.Send(helloFrame[:len(helloFrame)/2])
		}, code: ipc.ErrCodeTimeout, stall: true},
		{name: "truncated batch, then stall", send: func(c *ipctest.Conn) {
			hello(c)
			f := ipctest.Encode(t, ipctest.Batch(1, 10, 0, 0))
			c.Send(f[:len(f)-1])
		}, code: ipc.ErrCodeTimeout, stall: true},
		{name: "16 MiB announced, 10 bytes sent, then stall", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(append(header(ipc.DefaultMaxFrame), garbage[:10]...))
		}, code: ipc.ErrCodeTimeout, stall: true},
		{name: "batch before hello", send: func(c *ipctest.Conn) {
			c.Send(ipctest.Encode(t, ipctest.Batch(1, 1, 0, 0)))
		}, code: ipc.ErrCodeProtocol},
		{name: "second hello", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(helloFrame)
		}, code: ipc.ErrCodeProtocol},
		{name: "hello_ack from the client", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(ipctest.Encode(t, &ipc.HelloAck{Version: 1}))
		}, code: ipc.ErrCodeProtocol},
		{name: "ack from the client", send: func(c *ipctest.Conn) {
			c.Send(ipctest.Encode(t, &ipc.Ack{Seq: 1}))
		}, code: ipc.ErrCodeProtocol},
		{name: "unknown message type", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(ipctest.Frame(ipctest.Body(42, map[string]any{"seq": 1})))
		}, code: ipc.ErrCodeProtocol},
		{name: "array of 2^31 flows in a 20-byte frame", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(ipctest.Frame(ipctest.HugeArrayBody(1 << 31)))
		}, code: ipc.ErrCodeProtocol},
		{name: "more records than MaxRecords", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(ipctest.Frame(ipctest.Body(ipc.TypeBatch, map[string]any{
				"seq": 1, "samples": make([]struct{}, ipc.DefaultMaxRecords+1)})))
		}, code: ipc.ErrCodeTooLarge},
		{name: "string over MaxString", send: func(c *ipctest.Conn) {
			c.Send(ipctest.Frame(ipctest.Body(ipc.TypeHello, map[string]any{
				"version_min": 1, "version_max": 1, "instance_id": strings.Repeat("i", 5000)})))
		}, code: ipc.ErrCodeTooLarge},
		{name: "nesting 10000 deep", send: func(c *ipctest.Conn) {
			body := append([]byte{0x92, byte(ipc.TypeHello), 0x81, 0xa1, 'x'}, make([]byte, 10000)...)
			for i := 5; i < len(body); i++ {
				body[i] = 0x91
			}
			c.Send(ipctest.Frame(body))
		}, code: ipc.ErrCodeTooLarge},
		{name: "hello without instance id", send: func(c *ipctest.Conn) {
			c.Send(ipctest.Frame(ipctest.Body(ipc.TypeHello, map[string]any{"version_min": 1, "version_max": 1})))
		}, code: ipc.ErrCodeBadHello},
		{name: "batch with seq 0", send: func(c *ipctest.Conn) {
			hello(c)
			c.Send(ipctest.Frame(ipctest.Body(ipc.TypeBatch, map[string]any{"seq": 0})))
		}, code: ipc.ErrCodeBadBatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goodBatch()
			start := time.Now()
			c := ipctest.Dial(t, path)
			tt.send(c)
			if tt.stall {
				goodBatch() // served while the hostile peer stalls
			}
			e := c.ReadError(wait)
			elapsed := time.Since(start)
			if e.Code != tt.code {
				t.Errorf("error %+v, want code %s", e, tt.code)
			}
			if tt.stall && elapsed < readTimeout {
				t.Errorf("dropped after %v, before ReadTimeout %v", elapsed, readTimeout)
			}
			goodBatch()
		})
	}
	st := s.Stats()
	if st.ProtocolErrors != uint64(len(tests)) {
		t.Errorf("protocol errors %d, want %d", st.ProtocolErrors, len(tests))
	}
	in := h.Instance("good")
	if in.LastSeq != seq || len(in.Twice) != 0 {
		t.Errorf("good client: last seq %d, twice %v; want %d, none", in.LastSeq, in.Twice, seq)
	}
	if hostile := h.Instance("hostile"); len(hostile.Seqs) != 0 {
		t.Errorf("hostile batches applied: %v", hostile.Seqs)
	}
}
