package decode

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/fuzz/FuzzDecode from the shared robustness captures")

// fuzzSeedFiles are the robustness captures whose first frames are in
// testdata/fuzz/FuzzDecode: tunnels, tags, extension headers, fragments
// and frames that broke other parsers.
var fuzzSeedFiles = []string{
	"gopacket-linux_sll_oversized_addr.pcapng",
	"gopacket-test_loopback.pcap",
	"suricata-bug-4571-06-ipv4_over_ipv6.pcap",
	"suricata-bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data-eth-ip-gre-ppp-max-ip-packet.pcap",
	"suricata-decode-erspan-typeII-01.pcap",
	"suricata-decode-etag-01.pcap",
	"suricata-decode-sll2-02.pcap",
	"suricata-decode-vntag-01.pcap",
	"suricata-ipv6-malformed-fragments-36-frag-36.pcap",
	"suricata-vxlan-non-zero-reserved-fields.pcap",
	"tcpdump-bigtcp-ipv6-geneve-ipv6.pcap",
	"tcpdump-erspan-type-iii-ft-7.pcap",
	"tcpdump-gre-heapoverflow-1.pcap",
	"tcpdump-ipv6-srh-ext-header.pcap",
	"tcpdump-ipv6_jumbogram_1.pcap",
	"tcpdump-ipv6-rthdr-oobr.pcap",
	"tcpdump-mpls-label-heapoverflow.pcap",
	"tcpdump-pppoes.pcap",
	"tcpdump-various_gre.pcap",
	"zeek-cisco-fabric-path.pcap",
	"zeek-ipv6_zero_len_ah.pcap",
	"zeek-pbb-recursive-frames.pcapng",
	"zeek-pppoe-over-qinq.pcap",
	"zeek-snap-tcp.pcap",
	"zeek-trunc-ip6-ext-trunc.pcap",
	"zeek-trunc-ipv4-truncated-broken-header.pcap",
	"zeek-tunnels-geneve-vxlan-dns-truncated.pcap",
	"zeek-tunnels-gre-within-gre.pcap",
	"zeek-tunnels-mpls-6in6-6in6-4in6-invalid-version-4.pcap",
	"zeek-tunnels-vxlan-triple-v2.pcap",
	"zeek-vlan-qinqinq.pcap",
}

// TestFuzzDecode_corpus rewrites the seed corpus with -update.
func TestFuzzDecode_corpus(t *testing.T) {
	if !*update {
		t.Skip("rewrites testdata/fuzz/FuzzDecode only with -update")
	}
	dir := corpusDir(t, "robustness")
	out := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range fuzzSeedFiles {
		frames, err := robustnessFrames(filepath.Join(dir, name))
		if err != nil && len(frames) == 0 {
			t.Fatalf("read %s: %v", name, err)
		}
		for _, f := range frames[:min(len(frames), 2)] {
			// Seeds are cut to 512 bytes, as by a snapshot length, to keep
			// the fuzzer's inputs small; the wire length keeps the rest.
			data := f.data[:min(len(f.data), 512)]
			extra := uint16(0)
			if f.length > uint32(len(data)) {
				extra = uint16(min(f.length-uint32(len(data)), 0xffff))
			}
			body := fmt.Sprintf("go test fuzz v1\nuint16(%d)\nuint16(%d)\n[]byte(%s)\n", f.linkType, extra, strconv.Quote(string(data)))
			file := fmt.Sprintf("%s-%d", strings.TrimSuffix(strings.TrimSuffix(name, ".pcapng"), ".pcap"), f.num)
			if err := os.WriteFile(filepath.Join(out, file), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzDecode feeds arbitrary bytes as any link type, with a wire length up
// to 64 KiB past the captured bytes: Decode must not panic, must be
// deterministic, and an OK packet must be consistent (addresses valid and
// of one family, ports only for port protocols, fragments keyed).
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases() {
		if len(tc.data) <= 4096 {
			f.Add(tc.lt, uint16(0), tc.data)
		}
	}
	tso := eth(0x0800, ip4{proto: ProtoTCP, total: -1}.with(tcp(1, 2, TCPAck, make([]byte, 64))))
	f.Add(LinkTypeEthernet, uint16(60000), tso)
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, lt uint16, extra uint16, data []byte) {
		length := uint32(len(data)) + uint32(extra)
		var p, q Packet
		res := d.Decode(data, lt, length, &p)
		checkPacket(t, "fuzz", data, length, &p, res)
		if res2 := d.Decode(data, lt, length, &q); res2 != res || q != p {
			t.Errorf("second Decode = %v %+v, first %v %+v", res2, q, res, p)
		}
	})
}
