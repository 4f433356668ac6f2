package store

import (
	"net/netip"
	"os"
	"testing"
	"time"
)

func TestExpSkew(t *testing.T) {
	db := openAt(t, "/tmp/skew.db", Options{MaxSize: -1, Retention: -1})
	if os.Getenv("PREP") != "" {
		_, err := db.w.Exec("UPDATE flows SET dst_ip='10.9.9.9', dst_addr=X'00000000000000000000ffff0a090909' WHERE rid % 10 != 0")
		t.Log(err)
		_, err = db.w.Exec("UPDATE flows SET src_port=31337 WHERE rid % 6000 = 1")
		t.Log(err)
		db.w.Exec("DELETE FROM sqlite_stat1")
		db.w.Exec("DELETE FROM sqlite_stat4")
	}
	if os.Getenv("ANALYZE") != "" {
		_, err := db.w.Exec("PRAGMA optimize")
		t.Log("optimize", err)
	}
	var n int
	db.r.QueryRow("SELECT COUNT(*) FROM sqlite_stat1").Scan(&n)
	t.Log("stat1 rows", n)
	own := netip.MustParseAddr("10.9.9.9")
	for name, q := range map[string]FlowQuery{
		"own":             {IP: own},
		"own+rareport":    {IP: own, Port: 31337},
		"rareport":        {Port: 31337},
		"own+rareport+bytes": {IP: own, Port: 31337, Order: OrderBytes},
		"own+sctp":        {IP: own, Proto: "sctp"},
	} {
		t0 := time.Now()
		fs, _, err := db.Flows(t.Context(), q)
		t.Logf("%-20s %d %v %v", name, len(fs), time.Since(t0), err)
	}
}
