package ipc

import (
	"errors"
	"fmt"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// ProtocolVersion is the major version of the protocol this package speaks.
// Peers negotiate a major version in the hello; minor, compatible changes
// (new optional fields) need no negotiation. See PROTOCOL.md.
const ProtocolVersion uint16 = 1

// MsgType identifies the message carried by a frame.
type MsgType uint8

// Message types. The numbers are part of the wire format.
const (
	TypeHello    MsgType = 1
	TypeHelloAck MsgType = 2
	TypeBatch    MsgType = 3
	TypeAck      MsgType = 4
	TypeError    MsgType = 5
)

// String returns the type's name in PROTOCOL.md.
func (t MsgType) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeHelloAck:
		return "hello_ack"
	case TypeBatch:
		return "batch"
	case TypeAck:
		return "ack"
	case TypeError:
		return "error"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Message is one of *Hello, *HelloAck, *Batch, *Ack and *Error.
type Message interface {
	Type() MsgType
}

// Hello is the first message of a connection, from the client. It names the
// capture and the range of major protocol versions the client speaks.
type Hello struct {
	// VersionMin and VersionMax are the major versions the client speaks;
	// zero values mean ProtocolVersion.
	VersionMin uint16 `msgpack:"version_min"`
	VersionMax uint16 `msgpack:"version_max"`
	// InstanceID identifies one run of a capturer: it must be new each time
	// the process starts, because sequence numbers start again at 1.
	// Client generates one when it is empty. Required on the wire.
	InstanceID string `msgpack:"instance_id"`
	// Hostname is the capturer's host name.
	Hostname string `msgpack:"hostname"`
	// Software names the capturer and its version, for logs.
	Software string `msgpack:"software"`
	// Interface is the captured interface ("eth0", "any"), or the file read.
	Interface string `msgpack:"interface"`
	// LinkType is the link-layer header type (LINKTYPE_ number).
	LinkType uint16 `msgpack:"link_type"`
	// Filter describes the capture filters in force, empty for none.
	Filter string `msgpack:"filter"`
	// StartTime is when the capture started.
	StartTime time.Time `msgpack:"start_time"`
}

// Type returns TypeHello.
func (*Hello) Type() MsgType { return TypeHello }

// HelloAck is the server's answer to an acceptable Hello.
type HelloAck struct {
	// Version is the major version chosen: the highest that both peers
	// speak.
	Version uint16 `msgpack:"version"`
	// LastSeq is the highest sequence number already committed for the
	// hello's instance id (0 for none). The client drops its pending
	// batches up to it and resends the rest.
	LastSeq uint64 `msgpack:"last_seq"`
}

// Type returns TypeHelloAck.
func (*HelloAck) Type() MsgType { return TypeHelloAck }

// Batch is what a capturer learned during one flush interval.
//
// Flow records carry cumulative counters, so applying a record is an upsert
// by Flow.ID, and applying the same batch twice changes nothing but the
// packet samples, which is why the server applies each batch at most once.
type Batch struct {
	// Seq numbers the batches of one instance: 1, then increasing. Gaps
	// are allowed (the client renumbers coalesced batches). The Client sets
	// it; a value given to Client.Send is ignored.
	Seq uint64 `msgpack:"seq"`
	// Flows are the records of flows updated during the interval and still
	// active, with cumulative counters.
	Flows []record.Flow `msgpack:"flows"`
	// Ended are final records of flows that ended during the interval
	// (EndReason is set). A record in Ended supersedes one with the same
	// ID in Flows of the same batch.
	Ended []record.Flow `msgpack:"ended"`
	// Samples are sampled packet records, in capture order.
	Samples []record.PacketSample `msgpack:"samples"`
	// Stats are the capture's cumulative statistics.
	Stats record.CaptureStats `msgpack:"stats"`
	// Dropped counts, cumulatively since the client started, what the
	// client's bound on unacknowledged bytes made it drop. The Client sets
	// it; a value given to Client.Send is ignored.
	Dropped DropStats `msgpack:"dropped"`
	// Done says that the capture's source is exhausted (a file read to its
	// end): this is the instance's last batch, and the instance will not
	// send again. It is false for a live capture, and for one stopped by a
	// signal or an error. On the wire it is omitted when false, so a peer
	// that predates it reads every batch as not done. When the Client
	// splits or coalesces batches, Done goes on the last frame sent.
	Done bool `msgpack:"done,omitempty"`
}

// Type returns TypeBatch.
func (*Batch) Type() MsgType { return TypeBatch }

// DropStats are cumulative counts of what a client dropped because its
// pending bytes reached Client.MaxPendingBytes. Only EndedDropped (with its
// packets and bytes) and SamplesDropped lose information; coalescing and
// dropped updates of active flows lose nothing, because the next record of
// the same flow carries cumulative counters.
type DropStats struct {
	// SamplesDropped counts packet samples discarded.
	SamplesDropped uint64 `msgpack:"samples_dropped"`
	// BatchesCoalesced counts batches merged into a later one.
	BatchesCoalesced uint64 `msgpack:"batches_coalesced"`
	// UpdatesDropped counts records of still-active flows discarded after
	// coalescing; the flow's next record carries their counters.
	UpdatesDropped uint64 `msgpack:"updates_dropped"`
	// EndedDropped counts final flow records discarded, and EndedPackets
	// and EndedBytes the packets and bytes (both directions) they held.
	EndedDropped uint64 `msgpack:"ended_dropped"`
	EndedPackets uint64 `msgpack:"ended_packets"`
	EndedBytes   uint64 `msgpack:"ended_bytes"`
}

// Ack tells the client that every batch up to Seq is committed (or was a
// duplicate of a committed one): acknowledgements are cumulative.
type Ack struct {
	Seq uint64 `msgpack:"seq"`
}

// Type returns TypeAck.
func (*Ack) Type() MsgType { return TypeAck }

// Error is the last message a peer sends before it closes the connection.
// *Error is also an error, which Client reports when the server sends one.
type Error struct {
	// Code is one of the ErrCode constants.
	Code string `msgpack:"code"`
	// Message explains the error to a human.
	Message string `msgpack:"message"`
	// VersionMin and VersionMax are the major versions the server speaks,
	// set with ErrCodeVersion.
	VersionMin uint16 `msgpack:"version_min,omitempty"`
	VersionMax uint16 `msgpack:"version_max,omitempty"`
}

// Type returns TypeError.
func (*Error) Type() MsgType { return TypeError }

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("ipc peer error %s: %s", e.Code, e.Message)
}

// Error codes. A client retries after every one of them (with backoff),
// because the condition may be fixed on the server's side.
const (
	ErrCodeVersion   = "version"   // no common major version
	ErrCodeProtocol  = "protocol"  // undecodable or unexpected frame
	ErrCodeTooLarge  = "too_large" // a frame or an element over a limit
	ErrCodeForbidden = "forbidden" // peer uid not allowed
	ErrCodeBusy      = "busy"      // too many connections
	ErrCodeApply     = "apply"     // the handler failed to commit a batch
	ErrCodeInternal  = "internal"  // the server failed otherwise
	ErrCodeShutdown  = "shutdown"  // the server is closing
	ErrCodeReplaced  = "replaced"  // a newer connection took this instance over
	ErrCodeTimeout   = "timeout"   // a frame did not arrive in time
	ErrCodeBadHello  = "bad_hello" // the hello is invalid (missing instance id)
	ErrCodeBadBatch  = "bad_batch" // the batch is invalid (seq 0, flow without id)
)

// Limits bound what one frame may make a reader allocate. Zero fields mean
// the defaults, which every conforming writer stays within (the Client
// splits larger batches).
type Limits struct {
	// MaxFrame is the largest frame body in bytes (default 2 MiB).
	MaxFrame int
	// MaxRecords is the largest number of flows, ended flows and samples
	// together in one batch (default 16384).
	MaxRecords int
	// MaxString is the longest string in bytes (default 4096).
	MaxString int
	// MaxMapLen is the largest number of entries in any map: a message, a
	// record, decode_errors (default 256).
	MaxMapLen int
}

// Default limits; see Limits.
const (
	DefaultMaxFrame   = 2 << 20
	DefaultMaxRecords = 16384
	DefaultMaxString  = 4096
	DefaultMaxMapLen  = 256
	// maxDepth bounds the nesting of unknown values a reader skips.
	maxDepth = 16
)

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxFrame:   DefaultMaxFrame,
		MaxRecords: DefaultMaxRecords,
		MaxString:  DefaultMaxString,
		MaxMapLen:  DefaultMaxMapLen,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFrame <= 0 {
		l.MaxFrame = d.MaxFrame
	}
	if l.MaxRecords <= 0 {
		l.MaxRecords = d.MaxRecords
	}
	if l.MaxString <= 0 {
		l.MaxString = d.MaxString
	}
	if l.MaxMapLen <= 0 {
		l.MaxMapLen = d.MaxMapLen
	}
	return l
}

// Sentinel errors. Decoding errors wrap ErrMalformed, ErrTooLarge or
// ErrInvalid.
var (
	// ErrFrameTooLarge is returned by ReadFrame for a length prefix over the
	// limit. It wraps ErrTooLarge.
	ErrFrameTooLarge = fmt.Errorf("frame %w", ErrTooLarge)
	// ErrTooLarge reports a frame, array, map or string over a Limit.
	ErrTooLarge = errors.New("over limit")
	// ErrMalformed reports bytes that are not a valid message.
	ErrMalformed = errors.New("malformed message")
	// ErrInvalid reports a message that decodes but breaks a rule of
	// PROTOCOL.md (a hello without instance id, a batch with seq 0, a flow
	// without id), and, from Client.Send, a batch that could not be sent
	// within the limits.
	ErrInvalid = errors.New("invalid message")
	// ErrClosed is returned by Client.Send after Close.
	ErrClosed = errors.New("ipc client closed")
	// ErrSocketInUse is returned by Server.Start when a live server already
	// listens on the path.
	ErrSocketInUse = errors.New("socket in use by a live server")
)

// ConnObserver is an optional interface of a Handler: the server tells it
// when a capturer's connection completed its hello and when it ended (a
// health check can then tell a connected capturer from a silent one).
type ConnObserver interface {
	Connected(Peer)
	Disconnected(Peer)
}
