package testenv

import (
	"encoding/json"
	"os"
	"testing"
)

// Oracle is tshark's answer about one capture of the shared corpus: the
// JSON that shared/pcaps/make-oracle.sh writes to
// shared/pcaps/oracle/<folder>/<file>.json (its keys are described there).
type Oracle struct {
	File        string `json:"file"`
	TsharkExit  int    `json:"tshark_exit"`
	Frames      uint64 `json:"frames"`
	Packets     uint64 `json:"packets"`
	TotalBytes  uint64 `json:"total_bytes"`
	FileRecords uint64 `json:"file_records"`
	LinkType    struct {
		Low16 []uint32 `json:"linktype_low16"`
	} `json:"link_type"`
	// Conversations are tshark's -z conv tables by protocol ("tcp",
	// "udp", …).
	Conversations map[string][]Conversation `json:"conversations"`
}

// Conversation is one row of a tshark -z conv table.
type Conversation struct {
	A, B       string
	PortA      uint16 `json:"port_a"`
	PortB      uint16 `json:"port_b"`
	FramesAToB uint64 `json:"frames_a_to_b"`
	BytesAToB  uint64 `json:"bytes_a_to_b"`
	FramesBToA uint64 `json:"frames_b_to_a"`
	BytesBToA  uint64 `json:"bytes_b_to_a"`
	// TCPStream is tshark's tcp.stream of a TCP conversation.
	TCPStream *int    `json:"tcp_stream"`
	Duration  float64 `json:"duration"` // seconds
	// Verified says make-oracle.sh checked the row against tshark's
	// per-frame output.
	Verified bool `json:"verified"`
}

// ReadOracle reads the oracle file at path, failing tb when it cannot.
func ReadOracle(tb testing.TB, path string) Oracle {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var o Oracle
	if err := json.Unmarshal(b, &o); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return o
}
