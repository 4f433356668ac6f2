//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
)

// helperEnv makes the test binary (a copy that every uid can run,
// helperBin) act as a hostile IPC peer instead of running tests, so that
// the peer can run as a uid of the test's choosing: the value is the
// helper's mode, helperSockEnv the socket to dial.
const (
	helperEnv     = "LIGHTSHARK_E2E_HELPER"
	helperSockEnv = "LIGHTSHARK_E2E_SOCKET"
	helperHoldEnv = "LIGHTSHARK_E2E_HOLD" // seconds, for mode "hold"
)

// helperResult is what a helper prints (one JSON line) about what the
// server did with its connection.
type helperResult struct {
	Mode      string `json:"mode"`
	UID       int    `json:"uid"`
	DialError string `json:"dial_error,omitempty"`
	// Closed is true when the server closed the connection (EOF or reset)
	// within the helper's wait; AfterMS is when, from the last byte sent.
	Closed  bool  `json:"closed"`
	AfterMS int64 `json:"after_ms"`
	// ErrorCode is the code of the error frame the server sent, if any.
	ErrorCode string `json:"error_code,omitempty"`
	// Acked is true when the server answered a hello with a hello_ack.
	Acked bool   `json:"acked,omitempty"`
	Note  string `json:"note,omitempty"`
}

// Helper modes: what the peer sends after connecting.
const (
	modeGarbage     = "garbage"       // 64 KiB of random bytes
	modeHugePrefix  = "huge-prefix"   // a length prefix of 4 GiB - 1
	modeBigBody     = "big-body"      // a frame of MaxFrame random bytes (legal size, undecodable)
	modeHelloJunk   = "hello-garbage" // a valid hello, then a frame of random bytes
	modeStall       = "stall"         // half a frame, then silence
	modeHold        = "hold"          // nothing at all, for LIGHTSHARK_E2E_HOLD seconds
	helperWaitClose = 20 * time.Second
)

func runHelper() int {
	mode := os.Getenv(helperEnv)
	res := helperResult{Mode: mode, UID: os.Getuid()}
	err := helper(mode, os.Getenv(helperSockEnv), &res)
	if err != nil {
		res.Note = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func helper(mode, sock string, res *helperResult) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		res.DialError = err.Error()
		return nil
	}
	defer c.Close()
	junk := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	var send []byte
	switch mode {
	case modeGarbage:
		send = junk(64 << 10)
		// A length prefix under 64 KiB: the server reads a body of random
		// bytes and fails to decode it.
		send[0], send[1] = 0, 0
	case modeHugePrefix:
		send = append([]byte{0xff, 0xff, 0xff, 0xff}, junk(1024)...)
	case modeBigBody:
		send = binary.BigEndian.AppendUint32(nil, ipc.DefaultMaxFrame)
		send = append(send, junk(ipc.DefaultMaxFrame)...)
		send[4] = 0xc1 // never used in msgpack: undecodable from the first byte
	case modeHelloJunk:
		enc := ipc.NewEncoder()
		hello, err := enc.Encode(&ipc.Hello{VersionMin: ipc.ProtocolVersion, VersionMax: ipc.ProtocolVersion,
			InstanceID: "e2e-hostile-" + strconv.Itoa(os.Getpid()), Software: "e2e helper",
			Interface: "none", StartTime: time.Now()})
		if err != nil {
			return err
		}
		// A refused peer may find the connection closed before its hello
		// is written; the error frame is still there to read.
		werr := write(c, hello)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		body, err := ipc.ReadFrame(c, nil, ipc.DefaultMaxFrame)
		if err != nil {
			return fmt.Errorf("read hello_ack: %w (write: %v)", err, werr)
		}
		m, err := ipc.NewDecoder(ipc.DefaultLimits()).Decode(body)
		if err != nil {
			return fmt.Errorf("decode hello answer: %w", err)
		}
		switch m := m.(type) {
		case *ipc.HelloAck:
			res.Acked = true
		case *ipc.Error:
			res.ErrorCode, res.Note = m.Code, m.Message
			res.Closed = true
			return nil
		}
		send = binary.BigEndian.AppendUint32(nil, 4096)
		send = append(send, junk(4096)...)
		send[4] = 0x92 // an array of two, then junk
	case modeStall:
		send = binary.BigEndian.AppendUint32(nil, 1000)
		send = append(send, 0x92, 0x03)
	case modeHold:
		hold, _ := strconv.Atoi(os.Getenv(helperHoldEnv))
		time.Sleep(time.Duration(hold) * time.Second)
		// Still open? A read with a short deadline tells.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		res.Closed = !(errors.As(err, &ne) && ne.Timeout())
		return nil
	default:
		return fmt.Errorf("unknown helper mode %q", mode)
	}
	// Write what the mode sends; the server may close before it is all
	// read (a broken pipe is then part of the answer).
	werr := write(c, send)
	sent := time.Now()
	c.SetReadDeadline(sent.Add(helperWaitClose))
	for {
		body, err := ipc.ReadFrame(c, nil, ipc.DefaultMaxFrame)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return werr
			}
			res.Closed = true
			res.AfterMS = time.Since(sent).Milliseconds()
			return werr
		}
		if m, err := ipc.NewDecoder(ipc.DefaultLimits()).Decode(body); err == nil {
			if e, ok := m.(*ipc.Error); ok {
				res.ErrorCode, res.Note = e.Code, e.Message
			}
		}
	}
}

// write writes b; a peer that closed the connection (a broken pipe, a
// reset) is an answer, not an error.
func write(c net.Conn, b []byte) error {
	_, err := c.Write(b)
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// runHelperAs runs the helper in mode as c against sock and returns what
// it saw.
func runHelperAs(t *testing.T, c *cred, mode, sock string) helperResult {
	t.Helper()
	res, err := helperAs(t, c, mode, sock)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// helperAs is runHelperAs for goroutines other than the test's: it
// returns its error.
func helperAs(t *testing.T, c *cred, mode, sock string) (helperResult, error) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helperBin)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperSockEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: c.groups}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return helperResult{}, fmt.Errorf("helper %s as uid %d: %v\n%s", mode, c.uid, err, out)
	}
	var res helperResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		return helperResult{}, fmt.Errorf("helper %s as uid %d: %v\n%s", mode, c.uid, err, out)
	}
	return res, nil
}
