package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// streamMsg is any stream message.
type streamMsg struct {
	Type              string       `json:"type"`
	TotalPackets      uint64       `json:"total_packets"`
	TotalBytes        uint64       `json:"total_bytes"`
	ActiveConnections int          `json:"active_connections"`
	Count             uint64       `json:"count"`
	Flow              *record.Flow `json:"flow"`
	raw               []byte
	at                time.Time
}

func wsURL(f *fixture, query string) string {
	return "ws" + strings.TrimPrefix(f.ts.URL, "http") + "/api/stream" + query
}

// dialStream opens /api/stream?query with gorilla's client.
func dialStream(t testing.TB, f *fixture, query string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(f, query), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", query, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readMessage reads one message, failing after 10 s.
func readMessage(t testing.TB, c *websocket.Conn) streamMsg {
	t.Helper()
	m, err := tryRead(c, 10*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func tryRead(c *websocket.Conn, timeout time.Duration) (streamMsg, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	typ, b, err := c.ReadMessage()
	if err != nil {
		return streamMsg{}, err
	}
	var m streamMsg
	if typ != websocket.TextMessage {
		return m, fmt.Errorf("message type %d, want text", typ)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", b, err)
	}
	m.raw, m.at = b, time.Now()
	return m, nil
}

// TestStream_stats: a stats message at once, then one each second (real
// time), with the live numbers.
func TestStream_stats(t *testing.T) {
	f := newFedFixture(t, nil)
	c := dialStream(t, f, "")
	var msgs []streamMsg
	for len(msgs) < 4 {
		m := readMessage(t, c)
		if m.Type != "stats" {
			t.Fatalf("got %s, want only stats without flows=1", m.raw)
		}
		msgs = append(msgs, m)
		if len(msgs) == 1 {
			f.live.Apply("cap-1", live.Batch{Seq: 3, Stats: record.CaptureStats{Packets: 2000, Bytes: 200000}, ReceivedAt: t0})
		}
	}
	if m := msgs[0]; m.TotalPackets != 1500 || m.TotalBytes != 150000 || m.ActiveConnections != 3 {
		t.Errorf("first message: got %s", m.raw)
	}
	if m := msgs[3]; m.TotalPackets != 2000 || m.TotalBytes != 200000 {
		t.Errorf("after a batch: got %s, want the new totals", m.raw)
	}
	// The k-th message comes k seconds after the first (ticks do not
	// drift; the slack is for a loaded machine).
	for k := 1; k < len(msgs); k++ {
		d := msgs[k].at.Sub(msgs[0].at)
		if d < time.Duration(k)*time.Second-300*time.Millisecond || d > time.Duration(k)*time.Second+time.Second {
			t.Errorf("message %d came %v after the first, want about %ds", k, d, k)
		}
	}
}

// TestStream_flows: flows=1 with filters gets the matching flow updates
// and no others; without flows=1, none.
func TestStream_flows(t *testing.T) {
	f := newFixture(t, nil)
	https := dialStream(t, f, "?flows=1&port=443")
	dns := dialStream(t, f, "?flows=1&proto=udp")
	v6 := dialStream(t, f, "?flows=true&cidr=fd00::/8&direction=internal")
	statsOnly := dialStream(t, f, "")

	x := mkFlow("00000000000000a1", "tcp", "10.0.0.5", 45678, "142.250.1.1", 443, t0, t0, 3, 300, 4, 4000)
	y := mkFlow("00000000000000a2", "udp", "10.0.0.5", 5353, "10.0.0.53", 53, t0, t0, 1, 80, 1, 120)
	z := withState(mkFlow("00000000000000a3", "tcp", "fd00::1", 40000, "fd00::2", 5432, t0, t0, 10, 1000, 9, 900), "S1", record.DirInternal)
	xEnd, yEnd, zEnd := x, y, z
	xEnd.EndReason, yEnd.EndReason, zEnd.EndReason = record.EndClosed, record.EndIdle, record.EndEvicted
	xEnd.PacketsSent = 5

	// The subscriptions exist once the dials return: publish now.
	f.live.Apply("cap", live.Batch{Seq: 1, Flows: []record.Flow{y, z, x}})
	f.live.Apply("cap", live.Batch{Seq: 2, Ended: []record.Flow{xEnd, yEnd, zEnd}})

	for _, tc := range []struct {
		name string
		c    *websocket.Conn
		want []record.Flow
	}{
		{"port=443", https, []record.Flow{x, xEnd}},
		{"proto=udp", dns, []record.Flow{y, yEnd}},
		{"cidr+direction", v6, []record.Flow{z, zEnd}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The last wanted update comes after every other published
			// one, so reading up to it shows whether any other came.
			var got []record.Flow
			for len(got) < len(tc.want) {
				m := readMessage(t, tc.c)
				switch m.Type {
				case "stats":
				case "flow":
					got = append(got, *m.Flow)
				default:
					t.Fatalf("unexpected message %s", m.raw)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmpTime); diff != "" {
				t.Errorf("flow updates (-want +got):\n%s", diff)
			}
		})
	}
	for range 2 {
		if m := readMessage(t, statsOnly); m.Type != "stats" {
			t.Errorf("stats-only client got %s", m.raw)
		}
	}
}

// waitFor waits until cond holds, failing after timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// slowDialer opens connections with a fixed, small receive buffer (not
// autotuned up to megabytes), so that a client that stops reading fills
// its TCP window soon. (Much smaller, under loopback's 64 KiB MSS, and the
// receiver stops announcing window updates: the sender then waits on the
// persist timer, and the test on it.)
var slowDialer = &websocket.Dialer{
	NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(128 << 10)
		}
		return c, err
	},
}

// TestStream_slowClient: a client that stops reading loses flow updates
// (each counted: what it later receives plus the "lost" counts equals what
// was published) or is disconnected, while a client that keeps up gets
// every update, in order, and Apply is never held up.
func TestStream_slowClient(t *testing.T) {
	for _, tc := range []struct {
		name         string
		writeTimeout time.Duration
	}{
		{"lost", time.Minute},
		{"disconnected", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(s *Server) {
				s.StreamBuffer = 32
				s.StreamSendBuffer = 16 << 10
				s.StreamWriteTimeout = tc.writeTimeout
			})
			slow, _, err := slowDialer.Dial(wsURL(f, "?flows=1"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			fast := dialStream(t, f, "?flows=1")

			// The fast client reads in its own goroutine and reports
			// each flow update.
			fastFlows := make(chan streamMsg, 64)
			go func() {
				defer close(fastFlows)
				for {
					m, err := tryRead(fast, time.Minute)
					if err != nil {
						return
					}
					if m.Type != "stats" {
						fastFlows <- m
					}
				}
			}()

			// 80 rounds of 16 updates of about 4.3 kB: 5.5 MB, well over
			// what the slow client's socket buffers hold.
			const rounds, perRound = 80, 16
			pad := strings.Repeat("x", 4000)
			published := 0
			for r := range rounds {
				var batch []record.Flow
				for range perRound {
					published++
					fl := mkFlow(fmt.Sprintf("%016x", published), "tcp", "10.0.0.1", 1000, "10.0.0.2", 80, t0, t0, 1, 1, 1, 1)
					fl.History = pad
					batch = append(batch, fl)
				}
				applied := make(chan struct{})
				go func() {
					f.live.Apply("cap", live.Batch{Seq: uint64(r + 1), Flows: batch})
					close(applied)
				}()
				select {
				case <-applied:
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: Apply blocked", r)
				}
				// The fast client gets the whole round, in order, with
				// nothing lost.
				for i := range perRound {
					select {
					case m, ok := <-fastFlows:
						if !ok {
							t.Fatalf("round %d: fast client disconnected", r)
						}
						want := fmt.Sprintf("%016x", r*perRound+i+1)
						if m.Type != "flow" || m.Flow.ID != want {
							t.Fatalf("round %d: fast client got %.80s, want flow %s", r, m.raw, want)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("round %d: the fast client was held up", r)
					}
				}
			}
			if st := f.live.Hub.Stats(); st.Dropped == 0 {
				t.Fatalf("the slow client lost nothing (%+v): the test did not fill its buffers", st)
			}

			if tc.name == "disconnected" {
				waitFor(t, "the slow client's disconnection", 10*time.Second, func() bool { return f.live.Hub.Stats().Subscribers == 1 })
				for {
					m, err := tryRead(slow, 10*time.Second)
					if err == nil {
						if m.Type == "" {
							t.Fatalf("bad message %s", m.raw)
						}
						continue // what was in flight before the cut
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("slow client: still connected: %v", err)
					}
					break
				}
				// The fast client still works.
				f.live.Apply("cap", live.Batch{Seq: 1000, Flows: []record.Flow{mkFlow("00000000000000ff", "tcp", "10.0.0.1", 1, "10.0.0.2", 2, t0, t0, 1, 1, 1, 1)}})
				if m := <-fastFlows; m.Flow == nil || m.Flow.ID != "00000000000000ff" {
					t.Errorf("fast client after the cut: got %.80s", m.raw)
				}
				return
			}

			// The slow client reads at last: everything published reaches
			// it or is counted in "lost" messages, up to the newest update.
			received, lost := 0, uint64(0)
			last := fmt.Sprintf("%016x", published)
			for {
				m := readMessage(t, slow)
				if m.Type == "lost" {
					if m.Count == 0 {
						t.Errorf("lost message with count 0")
					}
					lost += m.Count
				}
				if m.Type == "flow" {
					received++
					if m.Flow.ID == last {
						break
					}
				}
			}
			if lost == 0 || received+int(lost) != published {
				t.Errorf("slow client: received %d + lost %d, want %d published with some lost", received, lost, published)
			}
			if st := f.live.Hub.Stats(); st.Dropped != lost {
				t.Errorf("hub counted %d dropped, the client was told %d", st.Dropped, lost)
			}
		})
	}
}

// TestStream_keepalive: the server pings; a client that answers stays
// connected past the pong deadline, one that does not is disconnected.
func TestStream_keepalive(t *testing.T) {
	f := newFixture(t, func(s *Server) {
		s.PingInterval = 50 * time.Millisecond
		s.StatsInterval = 20 * time.Millisecond
	})

	good := dialStream(t, f, "")
	pings := make(chan struct{}, 100)
	good.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return good.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	bad := dialStream(t, f, "")
	bad.SetPingHandler(func(string) error { return nil }) // never pongs

	// The good client, reading (which is when gorilla answers pings),
	// sees more than two ping intervals of pings and is still served.
	seen := 0
	for seen < 5 {
		readMessage(t, good)
		select {
		case <-pings:
			seen++
		default:
		}
	}
	if m := readMessage(t, good); m.Type != "stats" {
		t.Errorf("good client: got %s", m.raw)
	}
	// The bad client was cut off after two ping intervals without a pong.
	for {
		_, err := tryRead(bad, 5*time.Second)
		if err == nil {
			continue // sent before the cut
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("client without pongs still connected: %v", err)
		}
		break
	}
}

func TestStream_origin(t *testing.T) {
	f := newFixture(t, func(s *Server) { s.AllowOrigins = []string{"https://dash.example"} })
	host := strings.TrimPrefix(f.ts.URL, "http://")
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", 101},
		{"http://" + host, 101},
		{"https://dash.example", 101},
		{"https://evil.example", 403},
		{"http://" + host + ".evil.example", 403},
		{"null", 403},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(f, ""), h)
		if err == nil {
			c.Close()
		}
		if resp == nil || resp.StatusCode != tc.want {
			t.Errorf("origin %q: got %v (%v), want %d", tc.origin, resp, err, tc.want)
		}
	}
}

func TestStream_token(t *testing.T) {
	f := newFixture(t, func(s *Server) { s.Token = "tok" })
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(f, ""), nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("without token: got %v %v, want 401", resp, err)
	}
	dialStream(t, f, "?access_token=tok")
	c, _, err := websocket.DefaultDialer.Dial(wsURL(f, "?flows=1"), http.Header{"Authorization": {"Bearer tok"}})
	if err != nil {
		t.Fatalf("with the header: %v", err)
	}
	c.Close()
}

func TestStream_limits(t *testing.T) {
	f := newFixture(t, nil)
	f.live.Hub.MaxSubscribers = 1
	dialStream(t, f, "")
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(f, ""), nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("over MaxSubscribers: got %v %v, want 503", resp, err)
	}
}

// TestStream_close: closing the server tells clients it is going away,
// and refuses new streams.
func TestStream_close(t *testing.T) {
	f := newFixture(t, nil)
	c := dialStream(t, f, "")
	readMessage(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := tryRead(c, 10*time.Second)
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Errorf("got %v, want a going-away close", err)
		}
		break
	}
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(f, ""), nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("after Close: got %v %v, want 503", resp, err)
	}
	if st := f.live.Hub.Stats(); st.Subscribers != 0 {
		t.Errorf("subscriptions left: %d", st.Subscribers)
	}
}
