// Package ingest applies IPC batches: it is the ipc.Handler of the API
// server. A batch is committed to the store first, in one transaction with
// its (instance, seq) dedup state; only then is the live view updated and
// the batch acknowledged (by ipc, when Apply returns nil). A store failure
// is returned, so the capturer keeps the batch and resends it, and is
// shown in the live view's health.
package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/store"
)

// Ingest applies batches to a store and a live view. Safe for concurrent
// use (the store serialises writes).
type Ingest struct {
	Store  *store.DB
	Live   *live.State
	Logger *slog.Logger
	// Now is the server clock (receive times); time.Now by default.
	Now func() time.Time

	applied    atomic.Uint64
	duplicates atomic.Uint64
	failures   atomic.Uint64
}

var _ ipc.Handler = (*Ingest)(nil)
var _ ipc.ConnObserver = (*Ingest)(nil)

// Stats are the ingest's counters.
type Stats struct {
	Applied, Duplicates, Failures uint64
}

// Stats returns the counters.
func (in *Ingest) Stats() Stats {
	return Stats{Applied: in.applied.Load(), Duplicates: in.duplicates.Load(), Failures: in.failures.Load()}
}

func (in *Ingest) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

// Apply commits b from peer. It returns nil only once the batch is in the
// store (or was already: a resent batch is a no-op there).
func (in *Ingest) Apply(ctx context.Context, peer ipc.Peer, b *ipc.Batch) error {
	at := in.now()
	h := &peer.Hello
	c := store.Capturer{InstanceID: h.InstanceID, Hostname: h.Hostname, Software: h.Software,
		Interface: h.Interface, LinkType: h.LinkType, Filter: h.Filter, StartTime: h.StartTime}
	sb := store.Batch{
		Seq: b.Seq, Flows: b.Flows, Ended: b.Ended, Samples: b.Samples, Stats: b.Stats, ReceivedAt: at,
		Dropped: store.DropStats{
			SamplesDropped: b.Dropped.SamplesDropped, BatchesCoalesced: b.Dropped.BatchesCoalesced,
			UpdatesDropped: b.Dropped.UpdatesDropped, EndedDropped: b.Dropped.EndedDropped,
			EndedPackets: b.Dropped.EndedPackets, EndedBytes: b.Dropped.EndedBytes,
		},
	}
	applied, err := in.Store.ApplyBatch(ctx, c, &sb)
	if err != nil {
		in.failures.Add(1)
		in.Live.SetStoreError(err)
		return fmt.Errorf("ingest batch %d of %s: %w", b.Seq, h.InstanceID, err)
	}
	in.Live.SetStoreError(nil)
	if !applied {
		in.duplicates.Add(1)
		return nil
	}
	in.applied.Add(1)
	in.Live.Apply(h.InstanceID, live.Batch{Seq: b.Seq, Flows: b.Flows, Ended: b.Ended, Samples: b.Samples,
		Stats: b.Stats, ReceivedAt: at})
	return nil
}

// LastSeq is the last seq committed for the instance: the dedup state
// lives in the store, with the data, so it survives restarts.
func (in *Ingest) LastSeq(ctx context.Context, instanceID string) (uint64, error) {
	return in.Store.LastSeq(ctx, instanceID)
}

// Connected marks the capturer connected in the live view.
func (in *Ingest) Connected(p ipc.Peer) { in.Live.SetCapturerConnected(p.Hello.InstanceID, true) }

// Disconnected marks it disconnected.
func (in *Ingest) Disconnected(p ipc.Peer) { in.Live.SetCapturerConnected(p.Hello.InstanceID, false) }
