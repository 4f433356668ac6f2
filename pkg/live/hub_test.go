package live

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

func ids(flows []record.Flow) []string {
	var out []string
	for _, f := range flows {
		out = append(out, f.ID)
	}
	return out
}

func TestHub_PublishTake(t *testing.T) {
	h := NewHub()
	tcp, err := h.Subscribe(func(f *record.Flow) bool { return f.Proto == "tcp" }, 10)
	if err != nil {
		t.Fatal(err)
	}
	statsOnly, err := h.Subscribe(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish([]record.Flow{flow("1", "tcp", "", 1, 1, 0, 0), flow("2", "udp", "", 1, 1, 0, 0), flow("3", "tcp", "", 1, 1, 0, 0)})
	select {
	case <-tcp.Ready():
	default:
		t.Fatal("Ready not signalled")
	}
	got, lost := tcp.Take(nil)
	if fmt.Sprint(ids(got)) != "[1 3]" || lost != 0 {
		t.Errorf("got %v lost %d, want [1 3] lost 0", ids(got), lost)
	}
	select {
	case <-statsOnly.Ready():
		t.Error("a subscription without match was signalled")
	default:
	}
	if got, _ := statsOnly.Take(nil); len(got) != 0 {
		t.Errorf("a subscription without match got %v", ids(got))
	}
	// Nothing matching: no signal.
	h.Publish([]record.Flow{flow("4", "udp", "", 1, 1, 0, 0)})
	select {
	case <-tcp.Ready():
		t.Error("Ready signalled without a match")
	default:
	}
	if st := h.Stats(); st.Subscribers != 2 || st.Sent != 2 || st.Dropped != 0 {
		t.Errorf("hub stats: got %+v", st)
	}
	tcp.Close()
	tcp.Close()
	statsOnly.Close()
	if st := h.Stats(); st.Subscribers != 0 || st.Sent != 2 {
		t.Errorf("hub stats after close: got %+v, want 0 subscribers and the counts kept", st)
	}
	h.Publish([]record.Flow{flow("5", "tcp", "", 1, 1, 0, 0)}) // no subscriber: fine
}

// TestHub_overflow: a full buffer drops the oldest updates, and Take
// reports how many were lost since the previous Take.
func TestHub_overflow(t *testing.T) {
	h := NewHub()
	s, err := h.Subscribe(func(*record.Flow) bool { return true }, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 10 {
		h.Publish([]record.Flow{flow(fmt.Sprint(i), "tcp", "", 1, 1, 0, 0)})
	}
	got, lost := s.Take(nil)
	if fmt.Sprint(ids(got)) != "[6 7 8 9]" || lost != 6 {
		t.Errorf("got %v lost %d, want [6 7 8 9] lost 6", ids(got), lost)
	}
	h.Publish([]record.Flow{flow("10", "tcp", "", 1, 1, 0, 0)})
	got, lost = s.Take(got[:0])
	if fmt.Sprint(ids(got)) != "[10]" || lost != 0 {
		t.Errorf("second take: got %v lost %d, want [10] lost 0", ids(got), lost)
	}
	if st := s.Stats(); st.Sent != 5 || st.Dropped != 6 || st.Queued != 0 {
		t.Errorf("stats: got %+v, want sent 5 dropped 6", st)
	}
}

func TestHub_MaxSubscribers(t *testing.T) {
	h := NewHub()
	h.MaxSubscribers = 2
	a, _ := h.Subscribe(nil, 0)
	if _, err := h.Subscribe(nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Subscribe(nil, 0); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("third subscribe: got %v, want ErrTooManySubscribers", err)
	}
	a.Close()
	if _, err := h.Subscribe(nil, 0); err != nil {
		t.Errorf("after a close: got %v", err)
	}
}

// TestHub_slowSubscriber: a subscriber that never takes does not slow
// Apply or a subscriber that keeps up, which receives every update.
func TestHub_slowSubscriber(t *testing.T) {
	s := New()
	all := func(*record.Flow) bool { return true }
	slow, err := s.Hub.Subscribe(all, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := s.Hub.Subscribe(all, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()

	const n = 5000
	received := make(chan int)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var buf []record.Flow
		count := 0
		for count < n {
			<-fast.Ready()
			var lost uint64
			buf, lost = fast.Take(buf[:0])
			if lost != 0 {
				t.Errorf("fast subscriber lost %d", lost)
			}
			count += len(buf)
			received <- len(buf)
		}
	}()
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for i := range n {
			s.Apply("cap", Batch{Seq: uint64(i + 1), Flows: []record.Flow{flow(fmt.Sprint(i), "tcp", "", 1, 1, 0, 0)}})
			// Keep pace with the fast subscriber (it has room for 8), so
			// that only the slow one overflows.
			if i%4 == 3 {
				for got := 0; got < 4; got += <-received {
				}
			}
		}
	}()
	select {
	case <-applied:
	case <-time.After(30 * time.Second):
		t.Fatal("Apply blocked")
	}
	wg.Wait()
	st := slow.Stats()
	if st.Dropped != n-8 || st.Queued != 8 {
		t.Errorf("slow: got %+v, want %d dropped and 8 queued", st, n-8)
	}
	if got, lost := slow.Take(nil); lost != n-8 || got[0].ID != fmt.Sprint(n-8) {
		t.Errorf("slow take: lost %d first %s, want %d and the newest 8", lost, got[0].ID, n-8)
	}
}

// The ring grows only as far as a subscriber falls behind, keeps order
// across growth, and is given back after a burst.
func TestHub_ringGrows(t *testing.T) {
	h := NewHub()
	s, err := h.Subscribe(func(*record.Flow) bool { return true }, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			h.Publish([]record.Flow{flow(fmt.Sprint(i), "tcp", "", 1, 1, 0, 0)})
		}
	}
	publish(0, 3)
	if len(s.buf) != 8 {
		t.Errorf("ring of %d for 3 queued updates, want 8", len(s.buf))
	}
	got, _ := s.Take(nil)
	publish(3, 153) // past the bound of 100: the 50 oldest are dropped
	got, lost := s.Take(got[:0])
	if len(got) != 100 || got[0].ID != "53" || got[99].ID != "152" || lost != 50 {
		t.Errorf("got %d updates %s..%s, lost %d; want 53..152, lost 50", len(got), got[0].ID, got[len(got)-1].ID, lost)
	}
	if s.buf != nil {
		t.Errorf("the burst's ring (%d) was kept", len(s.buf))
	}
}
