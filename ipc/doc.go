// Package ipc is the wire between the capturer, which dials, and the API
// server, which listens: length-prefixed msgpack frames over a Unix stream
// socket (see PROTOCOL.md beside this file for every message, field, limit
// and guarantee).
//
// The Client keeps unacknowledged batches in memory, bounded in bytes, and
// resends them after reconnecting; the Server acknowledges a batch only
// after its Handler has committed it and applies each (instance id, seq) at
// most once. Together they deliver every batch exactly once as long as the
// client's bound is not exceeded, and report exactly what was dropped when
// it is.
//
// The server checks each peer's uid with SO_PEERCRED before reading a byte,
// and bounds everything a peer can make it hold: frame size, record counts,
// string lengths, nesting, connections and time.
//
// Frames are encoded with github.com/vmihailenco/msgpack/v5 into reused
// buffers and decoded by a small bounded reader of this package, which
// checks every length against the frame and the Limits before allocating.
//
// Package ipc imports nothing from pkg/ except pkg/record.
package ipc
