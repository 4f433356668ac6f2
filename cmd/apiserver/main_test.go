package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

func build(t *testing.T, dir, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = testenv.ModuleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// startAPIServer runs the real binary on a loopback port and returns its
// base URL.
func startAPIServer(t *testing.T, bin, sock, db string) (string, *exec.Cmd, *testenv.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, "--socket", sock, "--db-path", db, "--listen", "127.0.0.1:0")
	logs := &testenv.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	re := regexp.MustCompile(`api server started" listen=(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1], cmd, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("api server did not start:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestEndToEndImport: the capturer imports a real capture into the real API
// server over the Unix socket; /api/flows (paginated and as NDJSON),
// /api/flows/{id}, /api/stats, /api/history and /api/health then give the
// same numbers as the capturer's own JSONL output for the file, read back
// from the SQLite file.
func TestEndToEndImport(t *testing.T) {
	shared := testenv.SharedDir(t)
	dir, err := os.MkdirTemp("", "lightshark-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	apiBin := build(t, dir, "./cmd/apiserver", "lightshark-apiserver")
	capBin := build(t, dir, "./cmd/capturer", "lightshark-capturer")
	sock, db := filepath.Join(dir, "run", "ipc.sock"), filepath.Join(dir, "traffic.db")
	base, api, logs := startAPIServer(t, apiBin, sock, db)

	pcap := filepath.Join(shared, "pcaps", "conformance", "gopacket-cip.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, capBin, "--read", pcap, "--socket", sock, "-q").CombinedOutput(); err != nil {
		t.Fatalf("capturer: %v\n%s\napi server:\n%s", err, out, logs.String())
	}
	jsonl, err := exec.CommandContext(ctx, capBin, "--read", pcap, "--output", "jsonl", "-q").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]record.Flow{}
	sc := bufio.NewScanner(bytes.NewReader(jsonl))
	for sc.Scan() {
		var f record.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatal(err)
		}
		want[f.ID] = f
	}

	// Every flow, page by page.
	got := map[string]record.Flow{}
	cursor := ""
	for pages := 0; ; pages++ {
		var page struct {
			Flows      []record.Flow `json:"flows"`
			NextCursor string        `json:"next_cursor"`
		}
		getJSON(t, base+"/api/flows?limit=1000&cursor="+cursor, &page)
		for _, f := range page.Flows {
			if _, dup := got[f.ID]; dup {
				t.Fatalf("flow %s on two pages", f.ID)
			}
			got[f.ID] = f
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
	}
	if len(got) != len(want) {
		t.Fatalf("/api/flows: %d flows, the file has %d", len(got), len(want))
	}
	for id, w := range want {
		if g := got[id]; !sameFlow(g, w) {
			t.Errorf("flow %s:\n api   %+v\n jsonl %+v", id, g, w)
		}
	}

	// NDJSON export: the same set.
	resp, err := http.Get(base + "/api/flows?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc = bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var f record.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("ndjson line %q: %v", sc.Text(), err)
		}
		if !sameFlow(f, want[f.ID]) {
			t.Errorf("ndjson flow %s differs", f.ID)
		}
		n++
	}
	resp.Body.Close()
	if n != len(want) {
		t.Errorf("ndjson: %d flows, want %d", n, len(want))
	}

	// One flow by id.
	for id, w := range want {
		var f record.Flow
		getJSON(t, base+"/api/flows/"+id, &f)
		if !sameFlow(f, w) {
			t.Errorf("/api/flows/%s differs", id)
		}
		break
	}

	var stats struct {
		TotalPackets uint64 `json:"total_packets"`
		TotalBytes   uint64 `json:"total_bytes"`
	}
	getJSON(t, base+"/api/stats", &stats)
	if stats.TotalPackets != 26068 {
		t.Errorf("/api/stats total_packets %d, want the file's 26068", stats.TotalPackets)
	}
	var history []record.PacketSample
	getJSON(t, base+"/api/history?limit=1000", &history)
	if len(history) != 1000 {
		t.Errorf("/api/history: %d records, want 1000", len(history))
	}
	var health struct {
		Status string `json:"status"`
	}
	getJSON(t, base+"/api/health", &health)
	if health.Status == "" {
		t.Error("/api/health has no status")
	}

	// SIGTERM: a clean exit.
	api.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- api.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("api server exit: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Error("api server did not exit within 10 s of SIGTERM")
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs.String())
	}
}

// sameFlow compares the fields the store keeps (times compared as instants).
func sameFlow(a, b record.Flow) bool {
	a.FirstSeen, b.FirstSeen = record.Time{}, record.Time{}
	at, bt := a.LastSeen, b.LastSeen
	a.LastSeen, b.LastSeen = record.Time{}, record.Time{}
	return a == b && at.Equal(bt.Time)
}

// A query the store refuses (a protocol it does not know) is the client's
// error, not the server's.
func TestBadQueryIs400(t *testing.T) {
	dir := t.TempDir()
	apiBin := build(t, dir, "./cmd/apiserver", "lightshark-apiserver")
	base, _, _ := startAPIServer(t, apiBin, filepath.Join(dir, "ipc.sock"), filepath.Join(dir, "t.db"))
	for _, q := range []string{"proto=gre", "port=0", "order=sideways", "cidr=10.0.0.0/33", "limit=-1", "since=yesterday"} {
		resp, err := http.Get(base + "/api/flows?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 400 || body.Error == "" {
			t.Errorf("%s: %s %q, want 400 with an error", q, resp.Status, body.Error)
		}
	}
}
