package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// streamParams are the parameters /api/stream knows. Unknown ones are an
// error only with flows=1 (where a mistyped filter would silently match
// everything); the original stream took none.
var streamParams = withFilterParams("flows", "access_token")

// flowMessage is a flow update on the stream.
type flowMessage struct {
	Type string       `json:"type"` // "flow"
	Flow *record.Flow `json:"flow"`
}

// lostMessage tells a client how many flow updates it missed because it
// did not keep up.
type lostMessage struct {
	Type  string `json:"type"` // "lost"
	Count uint64 `json:"count"`
}

// handleStream is GET /api/stream, a WebSocket: a stats message at once
// and every StatsInterval, and with flows=1 a message per flow update
// that passes the /api/flows filters given. A client that falls behind
// loses flow updates (a "lost" message counts them); one that takes no
// message for StreamWriteTimeout, or answers no ping for two
// PingIntervals, is disconnected. Ingest never waits for a client.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery, nil)
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	withFlows, err := p.boolParam("flows")
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	var match func(*record.Flow) bool
	if withFlows {
		for k := range p.v {
			if !streamParams[k] {
				s.writeBadRequest(w, badParam(k, "unknown parameter"))
				return
			}
		}
		q := new(FlowQuery)
		if err := p.parseFilters(q); err != nil {
			s.writeBadRequest(w, err)
			return
		}
		match = q.Match
	}
	sub, err := s.Live.Hub.Subscribe(match, s.StreamBuffer)
	if errors.Is(err, live.ErrTooManySubscribers) {
		writeError(w, http.StatusServiceUnavailable, "too many stream clients")
		return
	}
	if !s.startStream() {
		sub.Close()
		writeError(w, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	// The subscription is closed before the stream counts out, so that
	// once Close has waited for the streams no subscription is left.
	defer func() {
		sub.Close()
		s.streams.Done()
	}()

	up := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   512,
		WriteBufferSize:  4096,
		CheckOrigin:      s.checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeError(w, status, reason.Error())
		},
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade answered the client
	}
	defer ws.Close()
	s.runStream(ws, sub)
}

// runStream writes the stream to ws until the client goes, a write
// fails, or the server closes.
func (s *Server) runStream(ws *websocket.Conn, sub *live.Subscription) {
	if c, ok := ws.UnderlyingConn().(interface{ SetWriteBuffer(int) error }); ok {
		_ = c.SetWriteBuffer(s.StreamSendBuffer)
	}
	pongWait := 2 * s.PingInterval
	ws.SetReadLimit(4096)
	_ = ws.SetReadDeadline(time.Now().Add(pongWait))
	ws.SetPongHandler(func(string) error {
		return ws.SetReadDeadline(time.Now().Add(pongWait))
	})
	// The reader handles control frames (pong, close) and discards any
	// message; it ends when the connection fails or closes.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}()
	defer func() {
		ws.Close()
		<-readDone
	}()

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	send := func(v any) error {
		buf.Reset()
		if err := enc.Encode(v); err != nil {
			return err
		}
		_ = ws.SetWriteDeadline(time.Now().Add(s.StreamWriteTimeout))
		return ws.WriteMessage(websocket.TextMessage, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	}
	sendStats := func() error {
		return send(newStatsMessage(s.Live.Stats(), s.Now()))
	}

	stats := time.NewTicker(s.StatsInterval)
	defer stats.Stop()
	ping := time.NewTicker(s.PingInterval)
	defer ping.Stop()
	if sendStats() != nil {
		return
	}
	var flows []record.Flow
	for {
		var err error
		select {
		case <-s.ctx.Done():
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
			_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			return
		case <-readDone:
			return
		case <-stats.C:
			err = sendStats()
		case <-ping.C:
			err = ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.StreamWriteTimeout))
		case <-sub.Ready():
			var lost uint64
			flows, lost = sub.Take(flows[:0])
			if lost > 0 {
				err = send(lostMessage{Type: "lost", Count: lost})
			}
			for i := 0; err == nil && i < len(flows); i++ {
				err = send(flowMessage{Type: "flow", Flow: &flows[i]})
			}
			clear(flows) // release the records' strings
			if cap(flows) > 64 {
				flows = nil // a burst is over: do not keep its room per client
			}
		}
		if err != nil {
			return
		}
	}
}
