package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// crashChildEnv names the database a re-executed test binary ingests into
// until it is killed (see TestDB_CrashConsistency).
const crashChildEnv = "LIGHTSHARK_STORE_CRASH_CHILD_DB"

const crashSeed = 111

// crashSim returns the crash test's deterministic batch source; both
// processes build the same batches from it.
func crashSim() func() *Batch {
	s := newSim(crashSeed, 400)
	return func() *Batch {
		b := s.batch(150, 10, 100)
		b.ReceivedAt = simStart.Add(time.Duration(b.Seq) * time.Second)
		return b
	}
}

// crashBatches returns the first n batches of crashSim.
func crashBatches(n int) []*Batch {
	next := crashSim()
	bs := make([]*Batch, n)
	for i := range bs {
		bs[i] = next()
	}
	return bs
}

// TestMain runs the crash child when asked to, the tests otherwise.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild applies batches forever, printing "acked SEQ" after each
// ApplyBatch that returned nil: what the IPC server would acknowledge.
func crashChild(path string) {
	ctx := context.Background()
	db, err := Open(ctx, path, Options{AggregationWindow: time.Minute, Retention: -1})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	c := newSim(crashSeed, 1).cap
	next := crashSim()
	for range 100000 {
		b := next()
		if _, err := db.ApplyBatch(ctx, c, b); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("acked %d\n", b.Seq) // stdout is unbuffered
	}
	os.Exit(2)
}

// TestDB_CrashConsistency kills a process with SIGKILL in the middle of its
// ingest, reopens its database and checks that it is sound and holds every
// batch the process acknowledged, each whole: at most one more (committed
// but not yet acknowledged), none in part.
func TestDB_CrashConsistency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killAfter := scaled(40, 12)
	var acked uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		seq, ok := strings.CutPrefix(line, "acked ")
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child: %s", line)
		}
		if acked, err = strconv.ParseUint(seq, 10, 64); err != nil {
			t.Fatal(err)
		}
		if acked == uint64(killAfter) {
			// The child is already inside the next ApplyBatch.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	cmd.Wait()

	db := openAt(t, path, Options{AggregationWindow: time.Minute, Retention: -1})
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Fatal(err)
	}
	last, err := db.LastSeq(t.Context(), newSim(crashSeed, 1).cap.InstanceID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("acknowledged %d batches, committed %d", acked, last)
	if last < acked || last > acked+1 {
		t.Fatalf("last committed seq %d, acknowledged %d", last, acked)
	}
	m := newModel()
	samples := 0
	for _, b := range crashBatches(int(last)) {
		m.apply(b)
		samples += len(b.Samples)
	}
	n := 0
	if err := db.EachFlow(t.Context(), FlowQuery{}, func(f *record.Flow) error {
		n++
		if d := cmp.Diff(m.flows[f.ID], *f); d != "" {
			return fmt.Errorf("flow %s (-want +got):\n%s", f.ID, d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(m.flows) {
		t.Errorf("%d flows, want %d", n, len(m.flows))
	}
	if got := count(t, db, "SELECT COUNT(*) FROM packets"); got != samples {
		t.Errorf("%d samples, want %d", got, samples)
	}
	// The next batch applies: the dedup state and the data agree.
	next := crashBatches(int(last) + 1)[last]
	mustApply(t, db, newSim(crashSeed, 1).cap, next)
}
