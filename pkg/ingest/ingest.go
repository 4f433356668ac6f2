// Package ingest applies IPC batches: it is the ipc.Handler of the API
// server. A batch is committed to the store first, in one transaction with
// its (instance, seq) dedup state; only then is the batch acknowledged (by
// ipc, when Apply returns nil).
//
// When the store refuses a write (a full disk, a read-only file, an I/O
// error), Apply does not give the batch back: it applies it to the live
// view at once (so /api/live, /api/stats and the stream show the traffic
// the store cannot take yet), marks health degraded with the store's
// error, and retries the commit with backoff, holding the batch
// unacknowledged, until the commit succeeds or its connection ends. The
// capturer keeps every unacknowledged batch and resends it on its next
// connection (it reconnects when a batch waits longer than its AckTimeout,
// 30 s by default, and its new connection takes over from the one
// waiting); a batch is applied to the live view once whichever connection
// brings it. So nothing acknowledged is lost, and nothing is acknowledged
// before it is committed.
//
// The traffic totals (/metrics' lightshark_traffic_*_total) are the
// store's, kept in each batch's transaction (store.DB.Traffic); the ingest
// copies them into the live view after every commit and when a capturer
// connects (PublishTraffic), so they count every committed flow record
// once, whatever the live view holds, and survive restarts.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/store"
)

// Defaults of the retry backoff.
const (
	DefaultRetryMin = 100 * time.Millisecond
	DefaultRetryMax = 2 * time.Second
	// retryLogInterval spaces the logs of a failure that repeats.
	retryLogInterval = 30 * time.Second
)

// Ingest applies batches to a store and a live view. Safe for concurrent
// use (the store serialises writes). Set the fields before the first
// Apply.
type Ingest struct {
	Store  *store.DB
	Live   *live.State
	Logger *slog.Logger
	// Now is the server clock (receive times); time.Now by default.
	Now func() time.Time
	// RetryMin and RetryMax bound the wait between two attempts to commit
	// a batch the store refused: it starts at RetryMin and doubles up to
	// RetryMax (defaults DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration

	applied    atomic.Uint64
	duplicates atomic.Uint64
	failures   atomic.Uint64
	retried    atomic.Uint64

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int
}

var _ ipc.Handler = (*Ingest)(nil)
var _ ipc.ConnObserver = (*Ingest)(nil)

// Stats are the ingest's counters.
type Stats struct {
	// Applied and Duplicates count batches committed and batches found
	// committed before.
	Applied, Duplicates uint64
	// Failures counts commits the store refused (each attempt); Retried
	// the batches that were committed after at least one refusal.
	Failures, Retried uint64
}

// Stats returns the counters.
func (in *Ingest) Stats() Stats {
	return Stats{Applied: in.applied.Load(), Duplicates: in.duplicates.Load(), Failures: in.failures.Load(),
		Retried: in.retried.Load()}
}

func (in *Ingest) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

func (in *Ingest) log() *slog.Logger {
	if in.Logger != nil {
		return in.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Apply commits b from peer. It returns nil only once the batch is in the
// store (or was already: a resent batch is a no-op there). A store that
// refuses the write is retried with backoff until ctx ends (the connection
// closed or was taken over); a batch the store finds invalid is returned
// at once. Once a batch with Done is committed, the live view marks its
// instance finished (an import read to its end), which health does not
// count as a lost capturer.
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
	var (
		failedSince time.Time
		attempts    int
		wait        time.Duration
		timer       *time.Timer
	)
	for {
		applied, err := in.Store.ApplyBatch(ctx, c, &sb)
		if err == nil {
			in.Live.SetStoreError(nil)
			if attempts > 0 {
				in.retried.Add(1)
				in.log().Info("store writes again; batch committed", "instance_id", h.InstanceID, "seq", b.Seq,
					"attempts", attempts+1, "failing_for", time.Since(failedSince).Round(time.Millisecond))
			}
			if applied {
				in.applied.Add(1)
				in.applyLive(h.InstanceID, b, at)
				in.PublishTraffic()
			} else {
				in.duplicates.Add(1)
			}
			if b.Done {
				// The capturer's last batch is committed (now or by an
				// earlier connection that lost the ack): its source is
				// read to the end.
				in.Live.SetCapturerFinished(h.InstanceID)
				in.log().Info("capturer finished its source", "instance_id", h.InstanceID,
					"interface", h.Interface, "seq", b.Seq)
			}
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, store.ErrInvalid) {
			// The connection ended (the capturer resends the batch on
			// its next one), or the batch can never be committed.
			return fmt.Errorf("ingest batch %d of %s: %w", b.Seq, h.InstanceID, err)
		}
		in.failures.Add(1)
		in.Live.SetStoreError(err)
		if attempts == 0 {
			failedSince = time.Now()
			// The live view need not wait for the store.
			in.applyLive(h.InstanceID, b, at)
		}
		attempts++
		wait = in.backoff(wait)
		in.logFailure(err, h.InstanceID, b.Seq, wait)
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ingest batch %d of %s: gave up after %d attempts: %w", b.Seq, h.InstanceID, attempts, err)
		case <-timer.C:
		}
	}
}

// applyLive applies b to the live view unless it already was (before its
// commit, by this or an earlier connection of the instance).
func (in *Ingest) applyLive(instanceID string, b *ipc.Batch, at time.Time) {
	if b.Seq <= in.Live.AppliedSeq(instanceID) {
		return
	}
	in.Live.Apply(instanceID, live.Batch{Seq: b.Seq, Flows: b.Flows, Ended: b.Ended, Samples: b.Samples,
		Stats: b.Stats, ReceivedAt: at})
}

// backoff returns the wait after one of prev.
func (in *Ingest) backoff(prev time.Duration) time.Duration {
	lo, hi := in.RetryMin, in.RetryMax
	if lo <= 0 {
		lo = DefaultRetryMin
	}
	if hi < lo {
		hi = max(DefaultRetryMax, lo)
	}
	if prev <= 0 {
		return lo
	}
	return min(2*prev, hi)
}

// logFailure logs a refused commit: the first at once, then at most one
// per retryLogInterval with the count of those left out.
func (in *Ingest) logFailure(err error, instanceID string, seq uint64, wait time.Duration) {
	in.logMu.Lock()
	now := time.Now()
	if !in.lastLog.IsZero() && now.Sub(in.lastLog) < retryLogInterval {
		in.suppressed++
		in.logMu.Unlock()
		return
	}
	n := in.suppressed
	in.lastLog, in.suppressed = now, 0
	in.logMu.Unlock()
	in.log().Warn("store refused a batch; holding it unacknowledged and retrying", "err", err,
		"instance_id", instanceID, "seq", seq, "retry_in", wait, "suppressed", n,
		"fix", "free disk space, make the database writable, or lower --max-db-size / --data-retention")
}

// LastSeq is the last seq committed for the instance: the dedup state
// lives in the store, with the data, so it survives restarts.
func (in *Ingest) LastSeq(ctx context.Context, instanceID string) (uint64, error) {
	return in.Store.LastSeq(ctx, instanceID)
}

// PublishTraffic copies the store's traffic totals into the live view. Apply
// calls it after each commit and Connected when a capturer connects; the
// API server may call it once at start, so that /metrics has the totals
// before the first capturer connects.
func (in *Ingest) PublishTraffic() {
	counts, version := in.Store.Traffic()
	t := make([]live.TrafficCount, len(counts))
	for i, c := range counts {
		t[i] = live.TrafficCount{TrafficKey: live.TrafficKey{Proto: c.Proto, Direction: c.Direction},
			Packets: c.Packets, Bytes: c.Bytes}
	}
	in.Live.SetTraffic(version, t)
}

// Connected marks the capturer connected in the live view, and publishes
// the traffic totals.
func (in *Ingest) Connected(p ipc.Peer) {
	in.Live.SetCapturerConnected(p.Hello.InstanceID, true)
	in.PublishTraffic()
}

// Disconnected marks it disconnected.
func (in *Ingest) Disconnected(p ipc.Peer) { in.Live.SetCapturerConnected(p.Hello.InstanceID, false) }
