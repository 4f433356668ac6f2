//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// importCapture is the capture TestImportHealth imports: 64 packets of
// HTTP (pcapng), small enough for one batch. pipeCapture is the one it
// feeds through a pipe: 26068 packets, more than the capturer's reader
// hands on at a time (512), so that batches leave while the pipe is open.
const (
	importCapture = "zeek-http-cooper-grill-dvwa.pcapng"
	pipeCapture   = "gopacket-cip.pcap"
)

// TestImportHealth runs lightshark-capturer --read against a running
// lightshark-apiserver (deployment (b)'s uids): an import that reads its
// file to the end and exits 0 leaves /api/health ok, its instance
// finished with the file's packets; an import killed (SIGKILL) while it
// reads standard input from a pipe still open (its batches arriving)
// leaves health degraded, "no capturer connected", the killed instance
// not finished, beside the finished one.
func TestImportHealth(t *testing.T) {
	setup(t)
	shared := testenv.SharedDir(t)
	t.Parallel()
	tp := newTopo(t)
	p := startSplit(t, tp, splitOptions{noStart: true})
	pcap := filepath.Join(tp.dir, importCapture)
	if err := copyFile(filepath.Join(shared, "pcaps", "conformance", importCapture), pcap, 0o644); err != nil {
		t.Fatal(err)
	}
	o := testenv.ReadOracle(t, filepath.Join(shared, "pcaps", "oracle", "conformance", importCapture+".json"))

	type capturer = struct {
		InstanceID string
		Connected  bool
		Finished   bool
		Batches    uint64
		Packets    uint64
	}
	// find returns the /api/health entry of the capturer instance id, or
	// with id "" of the first one not in other.
	find := func(h health, id string, other ...string) *capturer {
		for _, c := range h.Capturers {
			if c.InstanceID == id || (id == "" && !slices.Contains(other, c.InstanceID)) {
				return &capturer{c.InstanceID, c.Connected, c.Finished, c.Batches, c.Stats.Packets}
			}
		}
		return nil
	}
	// gone waits until the API server has seen every capturer's
	// connection close (a capturer's exit does not wait for that).
	gone := func(t *testing.T) health {
		t.Helper()
		var h health
		waitFor(t, 10*time.Second, "no capturer connected", func() bool {
			h = p.health(t)
			return h.CapturersConnected == 0
		})
		return h
	}

	var imported string
	t.Run("Finished", func(t *testing.T) {
		imp := startProc(t, tp.server, "lightshark-capturer --read FILE", asCapturer, capturerBin,
			"--read", pcap, "--socket", p.sock)
		if code, err := imp.wait(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("import of %s: exit %d, %v\n%s", importCapture, code, err, imp.out.String())
		}
		h := gone(t)
		c := find(h, "")
		if c == nil {
			t.Fatalf("no capturer in /api/health: %+v", h)
		}
		imported = c.InstanceID
		if h.Status != "ok" || len(h.Reasons) != 0 {
			t.Errorf("/api/health after the import: status %q, reasons %q; want ok, none", h.Status, h.Reasons)
		}
		if !c.Finished || c.Connected || c.Batches == 0 || c.Packets != o.Packets {
			t.Errorf("the import's capturer: %+v; want finished, not connected, with the file's %d packets", *c, o.Packets)
		}
	})
	if imported == "" {
		t.FailNow()
	}

	t.Run("Killed", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(shared, "pcaps", "conformance", pipeCapture))
		if err != nil {
			t.Fatal(err)
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		imp := startProcStdin(t, tp.server, "lightshark-capturer --read -", asCapturer, nil, pr, capturerBin,
			"--read", "-", "--socket", p.sock)
		pr.Close()
		// The whole file over about 2.5 s, as tcpdump -w - would feed it
		// (the capturer flushes a batch each second of reading), and the
		// pipe stays open: the capturer waits for more.
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for off := 0; off < len(data); off += 64 << 10 {
			if _, err := pw.Write(data[off:min(off+64<<10, len(data))]); err != nil {
				t.Fatal(err)
			}
			<-tick.C
		}
		var killed *capturer
		waitFor(t, 20*time.Second, "batches from the capturer reading the pipe", func() bool {
			killed = find(p.health(t), "", imported)
			return killed != nil && killed.Connected && killed.Packets >= 512
		})
		imp.kill9(t)
		h := gone(t)
		if h.Status != "degraded" || !slices.Equal(h.Reasons, []string{"no capturer connected"}) {
			t.Errorf("/api/health after the kill: status %q, reasons %q; want degraded, no capturer connected", h.Status, h.Reasons)
		}
		if c := find(h, killed.InstanceID); c == nil || c.Finished || c.Connected {
			t.Errorf("the killed capturer: %+v; want not finished, not connected", c)
		}
		if c := find(h, imported); c == nil || !c.Finished {
			t.Errorf("the first import's capturer: %+v; want still finished", c)
		}
	})
	p.stopAll(t)
}
