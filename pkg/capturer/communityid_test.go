package capturer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// TestCommunityID runs the Community ID specification's own sample captures
// through the whole pipeline: the set of IDs on the product's flows equals
// the set in the specification's baseline (seed 0, base64) for the same
// packets.
func TestCommunityID(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "community-id")
	b, err := os.ReadFile(filepath.Join(dir, "baseline_deflt.json"))
	if err != nil {
		t.Skipf("community-id baseline not found: %v", err)
	}
	var baseline []struct {
		CommunityID string `json:"communityid"`
	}
	if err := json.Unmarshal(b, &baseline); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, e := range baseline {
		want[e.CommunityID] = true
	}
	pcaps, _ := filepath.Glob(filepath.Join(dir, "pcaps", "*.pcap"))
	got := map[string]bool{}
	for _, p := range pcaps {
		flows, _, err := runFile(t, p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, f := range flows {
			r := f.Record()
			got[r.CommunityID] = true
			if !want[r.CommunityID] {
				t.Errorf("%s: flow %s %s:%d > %s:%d has %s, not in the baseline", filepath.Base(p), r.Proto, r.SrcIP, r.SrcPort, r.DstIP, r.DstPort, r.CommunityID)
			}
		}
	}
	var missing []string
	for id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(got) == 0 {
		t.Errorf("baseline IDs without a flow: %v (flows: %d IDs)", missing, len(got))
	}
}
