package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lightshark-dev/lightshark-mini/pkg/capfilter"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// frame is a copy of what a source returned.
type frame struct {
	info Info
	data []byte
}

// pktClass is the little the live tests need to know of a frame.
type pktClass struct {
	ipver        int
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	icmpType     uint8
	ipLen        int // IPv4 total length, or IPv6 payload length + 40
}

// classify parses an Ethernet (untagged) or raw IP frame; ok is false for
// anything else (ARP, or bytes that are not IP).
func classify(linkType uint16, b []byte) (c pktClass, ok bool) {
	switch linkType {
	case LinkTypeEthernet:
		if len(b) < 14 {
			return c, false
		}
		switch binary.BigEndian.Uint16(b[12:]) {
		case 0x0800, 0x86dd:
			b = b[14:]
		default:
			return c, false
		}
	case LinkTypeRaw:
	default:
		return c, false
	}
	if len(b) < 1 {
		return c, false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return c, false
		}
		ihl := int(b[0]&0xf) * 4
		c.ipver, c.proto, c.ipLen = 4, b[9], int(binary.BigEndian.Uint16(b[2:]))
		c.src, c.dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		if len(b) < ihl {
			return c, false
		}
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return c, false
		}
		c.ipver, c.proto, c.ipLen = 6, b[6], int(binary.BigEndian.Uint16(b[4:]))+40
		c.src, c.dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:]
	default:
		return c, false
	}
	switch c.proto {
	case 17:
		if len(l4) >= 4 {
			c.sport, c.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		}
	case 1, 58:
		if len(l4) >= 1 {
			c.icmpType = l4[0]
		}
	}
	return c, true
}

// isEcho reports an ICMP or ICMPv6 echo request or reply.
func (c pktClass) isEcho() bool {
	return c.proto == 1 && (c.icmpType == 8 || c.icmpType == 0) || c.proto == 58 && (c.icmpType == 128 || c.icmpType == 129)
}

// between reports a frame between the two addresses, either way.
func (c pktClass) between(x, y netip.Addr) bool {
	return c.src == x && c.dst == y || c.src == y && c.dst == x
}

// openIn opens a live source inside namespace ns and closes it at cleanup.
func openIn(t *testing.T, ns string, cfg LiveConfig) Source {
	t.Helper()
	var src Source
	err := testenv.InNetns(ns, func() error {
		var err error
		src, err = OpenLive(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("OpenLive(%+v) in %s: %v", cfg, ns, err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// readFrames reads from src, copying every frame, until done says so or
// the time is up; it returns what it read.
func readFrames(t *testing.T, src Source, limit time.Duration, done func([]frame) bool) []frame {
	t.Helper()
	var out []frame
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		data, info, err := src.ReadPacket()
		if errors.Is(err, ErrTimeout) {
			if done != nil && done(out) {
				return out
			}
			continue
		}
		if err != nil {
			t.Fatalf("ReadPacket: %v", err)
		}
		out = append(out, frame{info, bytes.Clone(data)})
		if done != nil && done(out) {
			return out
		}
	}
	return out
}

// readUntilIdle reads from src until a poll timeout passes without a
// frame: the ring is empty.
func readUntilIdle(t *testing.T, src Source) []frame {
	t.Helper()
	var out []frame
	for {
		data, info, err := src.ReadPacket()
		if errors.Is(err, ErrTimeout) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadPacket: %v", err)
		}
		out = append(out, frame{info, bytes.Clone(data)})
	}
}

// countFrames counts the frames of fs for which keep is true.
func countFrames(fs []frame, keep func(pktClass) bool) int {
	n := 0
	for _, f := range fs {
		if c, ok := classify(f.info.LinkType, f.data); ok && keep(c) {
			n++
		}
	}
	return n
}

// udpSender sends datagrams to one address from an unconnected socket (a
// connected one would turn the ICMP port unreachable of a closed port into
// an error, and drop the next datagram).
type udpSender struct {
	conn net.PacketConn
	to   *net.UDPAddr
}

func (u udpSender) Write(b []byte) (int, error) { return u.conn.WriteTo(b, u.to) }

// udpFrom opens a UDP socket inside ns that sends to raddr.
func udpFrom(t *testing.T, ns string, raddr netip.AddrPort) udpSender {
	t.Helper()
	var conn net.PacketConn
	err := testenv.InNetns(ns, func() error {
		var err error
		conn, err = net.ListenPacket("udp", ":0")
		return err
	})
	if err != nil {
		t.Fatalf("UDP socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { conn.Close() })
	return udpSender{conn, net.UDPAddrFromAddrPort(raddr)}
}

// tcpdumpBeside is tcpdump capturing to a file next to a test's source.
type tcpdumpBeside struct {
	cmd    *exec.Cmd
	file   string
	mu     sync.Mutex
	stderr strings.Builder
	eof    chan struct{}
}

// startTcpdump runs tcpdump on dev in ns, writing every frame (full
// length, delivered at once) to a file, and waits until it captures.
func startTcpdump(t *testing.T, p *testenv.Pair, ns, dev string) *tcpdumpBeside {
	t.Helper()
	tcpdump := testenv.RequireTool(t, "tcpdump")
	td := &tcpdumpBeside{file: filepath.Join(t.TempDir(), "beside.pcap"), eof: make(chan struct{})}
	// -Z root: tcpdump would otherwise switch to its own user, which
	// cannot write in the test's temporary directory.
	td.cmd = p.Command(ns, tcpdump, "-i", dev, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", td.file)
	pipe, err := td.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.StartCmd(t, td.cmd)
	ready := make(chan struct{})
	go func() {
		defer close(td.eof)
		sc := bufio.NewScanner(pipe)
		once := sync.Once{}
		for sc.Scan() {
			td.mu.Lock()
			td.stderr.WriteString(sc.Text() + "\n")
			td.mu.Unlock()
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-td.eof:
		t.Fatalf("tcpdump exited: %s", td.output())
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump not capturing after 10s: %s", td.output())
	}
	return td
}

func (td *tcpdumpBeside) output() string {
	td.mu.Lock()
	defer td.mu.Unlock()
	return td.stderr.String()
}

// frames reads what tcpdump has written so far.
func (td *tcpdumpBeside) frames(t *testing.T) []frame {
	t.Helper()
	src, err := OpenFile(td.file)
	if err != nil {
		return nil // header not written yet
	}
	defer src.Close()
	var out []frame
	for {
		data, info, err := src.ReadPacket()
		if err != nil {
			return out // io.EOF, or a record being written
		}
		out = append(out, frame{info, bytes.Clone(data)})
	}
}

// stop interrupts tcpdump and waits for it.
func (td *tcpdumpBeside) stop(t *testing.T) {
	t.Helper()
	td.cmd.Process.Signal(os.Interrupt)
	select {
	case <-td.eof:
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump did not stop: %s", td.output())
	}
	td.cmd.Wait()
}

// TestOpenLive_Veth captures ping and UDP traffic on a veth interface in a
// namespace, with tcpdump capturing beside it: both see the same frames of
// that traffic, in the same order, with the same original lengths and
// timestamps, the same leading bytes (this source keeps 256), link type
// Ethernet; the kernel's Received counter grows with them.
func TestOpenLive_Veth(t *testing.T) {
	p := testenv.NetnsPair(t)
	td := startTcpdump(t, p, p.B, p.DevB)
	src := openIn(t, p.B, LiveConfig{Interface: p.DevB})
	before, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// 5 echo requests and 5 replies per family, 1242- and 1262-byte frames;
	// then 20 UDP datagrams of 60 to 1200 bytes per family.
	p.Exec(t, p.A, "ping", "-c", "5", "-i", "0.05", "-s", "1200", "-W", "5", p.B4.String())
	p.Exec(t, p.A, "ping", "-6", "-c", "5", "-i", "0.05", "-s", "1200", "-W", "5", p.B6.String())
	for _, dst := range []netip.Addr{p.B4, p.B6} {
		conn := udpFrom(t, p.A, netip.AddrPortFrom(dst, 40000))
		for i := 1; i <= 20; i++ {
			if _, err := conn.Write(make([]byte, 60*i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	const want = 20 + 40
	ours := func(c pktClass) bool {
		if !c.between(p.A4, p.B4) && !c.between(p.A6, p.B6) {
			return false
		}
		return c.isEcho() || c.proto == 17 && c.dport == 40000
	}
	got := readFrames(t, src, 20*time.Second, func(fs []frame) bool { return countFrames(fs, ours) >= want })
	if n := countFrames(got, ours); n != want {
		t.Fatalf("source read %d frames of the traffic, want %d", n, want)
	}
	after, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}

	// tcpdump beside: wait until it has written the same traffic.
	var beside []frame
	deadline := time.Now().Add(10 * time.Second)
	for beside = td.frames(t); countFrames(beside, ours) < want && time.Now().Before(deadline); beside = td.frames(t) {
		time.Sleep(50 * time.Millisecond)
	}
	td.stop(t)
	beside = td.frames(t)

	filter := func(fs []frame) []frame {
		var out []frame
		for _, f := range fs {
			if c, ok := classify(f.info.LinkType, f.data); ok && ours(c) {
				out = append(out, f)
			}
		}
		return out
	}
	mine, theirs := filter(got), filter(beside)
	if len(mine) != len(theirs) {
		t.Fatalf("source: %d frames of the traffic, tcpdump: %d", len(mine), len(theirs))
	}
	var maxSkew time.Duration
	for i := range mine {
		m, th := mine[i], theirs[i]
		if m.info.LinkType != LinkTypeEthernet || th.info.LinkType != LinkTypeEthernet {
			t.Fatalf("frame %d: link types %d and %d, want 1", i, m.info.LinkType, th.info.LinkType)
		}
		if m.info.Length != th.info.Length {
			t.Errorf("frame %d: length %d, tcpdump %d", i, m.info.Length, th.info.Length)
		}
		if wantCap := min(th.info.Length, DefaultSnaplen); m.info.CaptureLength != wantCap || !bytes.Equal(m.data, th.data[:wantCap]) {
			t.Errorf("frame %d: captured %d bytes (want %d) or bytes differ from tcpdump's", i, m.info.CaptureLength, wantCap)
		}
		if m.info.VLAN != -1 {
			t.Errorf("frame %d: VLAN %d on an untagged veth", i, m.info.VLAN)
		}
		skew := m.info.Timestamp.Sub(th.info.Timestamp).Abs()
		maxSkew = max(maxSkew, skew)
		if m.info.Timestamp.Before(start.Add(-time.Second)) || m.info.Timestamp.After(time.Now()) {
			t.Errorf("frame %d: timestamp %s outside the test's run", i, m.info.Timestamp)
		}
	}
	if maxSkew > 100*time.Millisecond {
		t.Errorf("timestamps differ from tcpdump's by up to %v", maxSkew)
	}
	t.Logf("%d frames of the traffic (%d in all); timestamps within %v of tcpdump's; stats %+v -> %+v",
		len(mine), len(got), maxSkew, before, after)
	lengths := map[int]bool{}
	for _, f := range mine {
		lengths[f.info.Length] = true
	}
	if !lengths[14+20+8+1200] || !lengths[14+40+8+1200] {
		t.Errorf("no 1242-byte IPv4 or 1262-byte IPv6 echo among lengths %v", lengths)
	}
	if after.Received < before.Received+uint64(want) || after.Received < uint64(len(got)) || after.Dropped != 0 {
		t.Errorf("stats %+v after %+v: want Received grown by at least %d, no drops", after, before, want)
	}
}

// udp5353Filter is the kernel filter "udp and port 5353" for linkType,
// from pkg/capfilter (the one the capturer uses), accepting 65535 bytes.
func udp5353Filter(t *testing.T, linkType uint16) LiveConfig {
	t.Helper()
	spec, err := capfilter.Parse("5353", "", "udp")
	if err != nil {
		t.Fatal(err)
	}
	prog, err := spec.Compile(linkType, 65535)
	if err != nil {
		t.Fatal(err)
	}
	return LiveConfig{Filter: prog}
}

// excludedFlood sends traffic the udp-5353 filter rejects from ns A to B
// until the test ends: ping every 10 ms in each family, and UDP to ports
// 5354 and 9999 every 5 ms.
func excludedFlood(t *testing.T, p *testenv.Pair) {
	t.Helper()
	p.Start(t, p.A, "ping", "-q", "-i", "0.01", p.B4.String())
	p.Start(t, p.A, "ping", "-6", "-q", "-i", "0.01", p.B6.String())
	c1 := udpFrom(t, p.A, netip.AddrPortFrom(p.B4, 5354))
	c2 := udpFrom(t, p.A, netip.AddrPortFrom(p.B6, 9999))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				c1.Write([]byte("not this one"))
				c2.Write([]byte("nor this one"))
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// TestOpenLive_Filter attaches "udp and port 5353" while other traffic
// flows, from before the source is opened: no excluded frame is ever
// returned (not even one that arrived before the filter was attached), the
// kernel's Received counter stays at zero while only excluded traffic
// flows (the socket filter runs before the counters), and included traffic
// is returned and counted exactly, cut at Snaplen although the filter
// accepts more.
func TestOpenLive_Filter(t *testing.T) {
	p := testenv.NetnsPair(t)
	excludedFlood(t, p)

	// An unfiltered source shows the flood on the wire before the filtered
	// source exists.
	all := openIn(t, p.B, LiveConfig{Interface: p.DevB})
	flood := func(c pktClass) bool { return c.isEcho() || c.proto == 17 && (c.dport == 5354 || c.dport == 9999) }
	pre := readFrames(t, all, 10*time.Second, func(fs []frame) bool { return countFrames(fs, flood) >= 50 })
	if n := countFrames(pre, flood); n < 50 {
		t.Fatalf("flood not seen: %d frames", n)
	}

	cfg := udp5353Filter(t, LiveLinkType(p.DevB))
	cfg.Interface, cfg.Snaplen = p.DevB, 100
	src := openIn(t, p.B, cfg)

	// Only excluded traffic for half a second.
	if got := readFrames(t, src, 500*time.Millisecond, nil); len(got) != 0 {
		c, _ := classify(got[0].info.LinkType, got[0].data)
		t.Fatalf("filtered source returned %d frames while only excluded traffic flowed; the first: %+v", len(got), c)
	}
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Received != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v while only excluded traffic flowed, want zero", st)
	}
	// The flood went on meanwhile.
	during := readFrames(t, all, 5*time.Second, func(fs []frame) bool { return countFrames(fs, flood) >= 50 })
	if n := countFrames(during, flood); n < 50 {
		t.Fatalf("flood stopped: %d frames", n)
	}

	// Included traffic: 10 datagrams to port 5353 per family.
	for _, dst := range []netip.Addr{p.B4, p.B6} {
		conn := udpFrom(t, p.A, netip.AddrPortFrom(dst, 5353))
		for i := range 10 {
			conn.Write(append([]byte(fmt.Sprintf("query %d", i)), make([]byte, 200)...))
		}
	}
	included := func(c pktClass) bool { return c.proto == 17 && (c.dport == 5353 || c.sport == 5353) }
	got := readFrames(t, src, 10*time.Second, func(fs []frame) bool { return len(fs) >= 20 })
	// Anything late would show within another 300 ms.
	got = append(got, readFrames(t, src, 300*time.Millisecond, nil)...)
	if n := countFrames(got, included); n != 20 || len(got) != 20 {
		t.Fatalf("read %d frames, %d of them udp port 5353; want 20 and 20", len(got), n)
	}
	for _, f := range got {
		c, _ := classify(f.info.LinkType, f.data)
		if c.dport != 5353 || (!c.between(p.A4, p.B4) && !c.between(p.A6, p.B6)) {
			t.Errorf("unexpected frame %+v", c)
		}
		if f.info.CaptureLength != 100 || f.info.Length != 14+c.ipLen || f.info.Length < 14+20+8+207 {
			t.Errorf("captured %d of %d bytes, want 100 of %d", f.info.CaptureLength, f.info.Length, 14+c.ipLen)
		}
	}
	st, err = src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Received != 20 || st.Dropped != 0 {
		t.Errorf("stats %+v, want Received 20 (the included datagrams only), Dropped 0", st)
	}
}

// TestOpenLive_TrafficBeforeFilter opens a filtered source several times
// while a ping flood (excluded) saturates the link, so that frames reach
// the socket between its bind and the filter: none of them is ever
// returned or counted.
func TestOpenLive_TrafficBeforeFilter(t *testing.T) {
	p := testenv.NetnsPair(t)
	p.Start(t, p.A, "ping", "-q", "-f", "-s", "64", p.B4.String())
	all := openIn(t, p.B, LiveConfig{Interface: p.DevB})
	if pre := readFrames(t, all, 10*time.Second, func(fs []frame) bool { return len(fs) >= 1000 }); len(pre) < 1000 {
		t.Fatalf("flood not seen: %d frames", len(pre))
	}
	all.Close()

	cfg := udp5353Filter(t, LinkTypeEthernet)
	cfg.Interface = p.DevB
	drained := 0
	for i := range 5 {
		src := openIn(t, p.B, cfg)
		drained += src.(*liveSource).drained
		if got := readFrames(t, src, 200*time.Millisecond, nil); len(got) != 0 {
			t.Fatalf("open %d: %d frames returned, all excluded", i, len(got))
		}
		if st, err := src.Stats(); err != nil || st.Received != 0 {
			t.Fatalf("open %d: stats %+v (%v), want zero", i, st, err)
		}
		src.Close()
	}
	t.Logf("frames that reached the ring before the filter, discarded: %d in 5 opens", drained)
}

// TestOpenLive_Any captures on "any": a SOCK_DGRAM socket on every
// interface of the namespace, link type 101, frames starting at the IP
// header. It sees IPv4 and IPv6, no ARP (the kernel drops what is not IP),
// and loopback traffic once (not also as the outgoing copy).
func TestOpenLive_Any(t *testing.T) {
	p := testenv.NetnsPair(t)
	var lt uint16
	testenv.InNetns(p.B, func() error { lt = LiveLinkType(AnyInterface); return nil })
	if lt != LinkTypeRaw {
		t.Fatalf("LiveLinkType(any) = %d, want 101", lt)
	}
	src := openIn(t, p.B, LiveConfig{Interface: AnyInterface})

	// The first ping makes A resolve B with ARP, on the wire as well.
	p.Exec(t, p.A, "ip", "neigh", "flush", "dev", p.DevA)
	p.Exec(t, p.A, "ping", "-c", "3", "-i", "0.05", p.B4.String())
	p.Exec(t, p.A, "ping", "-6", "-c", "3", "-i", "0.05", p.B6.String())
	p.Exec(t, p.B, "ping", "-c", "3", "-i", "0.05", "127.0.0.1")

	lo4 := netip.MustParseAddr("127.0.0.1")
	v4 := func(c pktClass) bool { return c.isEcho() && c.between(p.A4, p.B4) }
	v6 := func(c pktClass) bool { return c.isEcho() && c.between(p.A6, p.B6) }
	lo := func(c pktClass) bool { return c.isEcho() && c.between(lo4, lo4) }
	got := readFrames(t, src, 20*time.Second, func(fs []frame) bool {
		return countFrames(fs, v4) >= 6 && countFrames(fs, v6) >= 6 && countFrames(fs, lo) >= 6
	})
	got = append(got, readFrames(t, src, 300*time.Millisecond, nil)...)
	if a, b, c := countFrames(got, v4), countFrames(got, v6), countFrames(got, lo); a != 6 || b != 6 || c != 6 {
		t.Errorf("echo frames: %d IPv4 over veth, %d IPv6 over veth, %d over loopback; want 6 each (loopback once per packet)", a, b, c)
	}
	for i, f := range got {
		c, ok := classify(f.info.LinkType, f.data)
		if f.info.LinkType != LinkTypeRaw || !ok {
			t.Fatalf("frame %d: link type %d, first byte %#x: not raw IP", i, f.info.LinkType, f.data[0])
		}
		if c.ipLen != f.info.Length {
			t.Errorf("frame %d: length %d, IP header says %d", i, f.info.Length, c.ipLen)
		}
	}
	st, err := src.Stats()
	if err != nil || st.Received < uint64(len(got)) {
		t.Errorf("stats %+v (%v), read %d frames", st, err, len(got))
	}
}

// TestOpenLive_Tun captures on a tun device (ARPHRD_NONE: no link header):
// a SOCK_DGRAM socket, link type 101, IP packets as written to the tun.
func TestOpenLive_Tun(t *testing.T) {
	p := testenv.NetnsPair(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("/dev/net/tun not available")
	}
	var tun *os.File
	err := testenv.InNetns(p.B, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq("lstun0")
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return err
		}
		tun = os.NewFile(uintptr(fd), "/dev/net/tun")
		return nil
	})
	if err != nil {
		t.Fatalf("create tun: %v", err)
	}
	t.Cleanup(func() { tun.Close() })
	p.Exec(t, p.B, "ip", "addr", "add", "10.99.0.1/24", "dev", "lstun0")
	p.Exec(t, p.B, "ip", "link", "set", "lstun0", "up")

	var lt uint16
	testenv.InNetns(p.B, func() error { lt = LiveLinkType("lstun0"); return nil })
	if lt != LinkTypeRaw {
		t.Fatalf("LiveLinkType(tun) = %d, want 101", lt)
	}
	src := openIn(t, p.B, LiveConfig{Interface: "lstun0"})

	// Written to the tun, a packet is received by the kernel on lstun0.
	pkt := udp4Packet(netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"), 7777, make([]byte, 300))
	for range 3 {
		if _, err := tun.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	is7777 := func(c pktClass) bool { return c.proto == 17 && c.dport == 7777 }
	got := readFrames(t, src, 10*time.Second, func(fs []frame) bool { return countFrames(fs, is7777) >= 3 })
	if n := countFrames(got, is7777); n != 3 {
		t.Fatalf("read %d of the 3 datagrams", n)
	}
	for _, f := range got {
		if c, _ := classify(f.info.LinkType, f.data); is7777(c) {
			if f.info.LinkType != LinkTypeRaw || f.info.Length != len(pkt) || !bytes.Equal(f.data, pkt[:DefaultSnaplen]) {
				t.Errorf("got link %d, length %d, want 101 and %d with the packet's bytes", f.info.LinkType, f.info.Length, len(pkt))
			}
		}
	}
}

// udp4Packet builds an IPv4 UDP packet (header checksum set, UDP checksum
// 0: none).
func udp4Packet(src, dst netip.Addr, port uint16, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s4, d4 := src.As4(), dst.As4()
	copy(b[12:], s4[:])
	copy(b[16:], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], port)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// TestOpenLive_UnknownInterface checks the error for an interface that
// does not exist: it lists the namespace's interfaces.
func TestOpenLive_UnknownInterface(t *testing.T) {
	// In the test's own namespace (no privilege needed to look).
	_, err := OpenLive(LiveConfig{Interface: "nope0"})
	var nf *InterfaceNotFoundError
	if !errors.As(err, &nf) || !slices.Contains(nf.Available, "lo") ||
		!strings.HasPrefix(err.Error(), `interface "nope0" not found (available: `) {
		t.Errorf("got %v", err)
	}

	// In a namespace of known contents, the exact message.
	p := testenv.NetnsPair(t)
	err = testenv.InNetns(p.B, func() error {
		_, err := OpenLive(LiveConfig{Interface: "eth9"})
		return err
	})
	if want := `interface "eth9" not found (available: lo, veth-b)`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// childEnv tells a re-executed test binary to act as the child of
// TestOpenLive_Permission.
const childEnv = "LIGHTSHARK_CAPTURE_TEST_CHILD"

// TestOpenLive_Permission runs OpenLive as an unprivileged user (uid
// 65534, a re-executed copy of this test binary): without CAP_NET_RAW the
// error says what is missing and wraps EPERM; with only CAP_NET_RAW, as
// an ambient capability, it succeeds.
func TestOpenLive_Permission(t *testing.T) {
	if os.Getenv(childEnv) == "open-lo" {
		src, err := OpenLive(LiveConfig{Interface: "lo"})
		if err != nil {
			fmt.Printf("error: %v\nEPERM: %v\n", err, errors.Is(err, syscall.EPERM))
			os.Exit(3)
		}
		src.Close()
		fmt.Println("opened")
		os.Exit(0)
	}
	testenv.RequireRoot(t)

	// The test binary sits in go's private build directory: copy it where
	// uid 65534 can run it.
	dir, err := os.MkdirTemp("", "lightshark-capture-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "capture.test")
	if err := copyFile(os.Args[0], bin, 0o755); err != nil {
		t.Fatal(err)
	}

	run := func(caps []uintptr) (string, error) {
		cmd := exec.Command(bin, "-test.run=^TestOpenLive_Permission$", "-test.count=1")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), childEnv+"=open-lo")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
			AmbientCaps: caps,
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run(nil)
	if err == nil || !strings.Contains(out, "error: open AF_PACKET socket: operation not permitted (needs CAP_NET_RAW)\n") ||
		!strings.Contains(out, "EPERM: true") {
		t.Errorf("without CAP_NET_RAW: %v\n%s", err, out)
	}
	out, err = run([]uintptr{unix.CAP_NET_RAW})
	if err != nil || !strings.Contains(out, "opened") {
		t.Errorf("with ambient CAP_NET_RAW: %v\n%s", err, out)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestDefaultInterface checks the choice of interface in a namespace with
// two veth interfaces: the IPv4 default route's, else the IPv6 default
// route's, else the first interface up with an address; an error when
// none is left.
func TestDefaultInterface(t *testing.T) {
	p := testenv.NetnsPair(t)
	// A second link from A to B, "second" in A, with its own addresses.
	p.Exec(t, p.A, "ip", "link", "add", "second", "type", "veth", "peer", "name", "second-b", "netns", p.B)
	p.Exec(t, p.A, "ip", "addr", "add", "10.201.0.1/30", "dev", "second")
	p.Exec(t, p.A, "ip", "-6", "addr", "add", "fd00:6c74::1/64", "dev", "second", "nodad")
	p.Exec(t, p.A, "ip", "link", "set", "second", "up")
	p.Exec(t, p.B, "ip", "addr", "add", "10.201.0.2/30", "dev", "second-b")
	p.Exec(t, p.B, "ip", "-6", "addr", "add", "fd00:6c74::2/64", "dev", "second-b", "nodad")
	p.Exec(t, p.B, "ip", "link", "set", "second-b", "up")

	check := func(step, want string) {
		t.Helper()
		var got string
		err := testenv.InNetns(p.A, func() error {
			var err error
			got, err = DefaultInterface()
			return err
		})
		if want == "" {
			if err == nil {
				t.Errorf("%s: got %q, want an error", step, got)
			} else {
				t.Logf("%s: %v", step, err)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("%s: got %q (%v), want %q", step, got, err, want)
		}
	}
	check("no route: first interface up with an address", p.DevA)
	p.Exec(t, p.A, "ip", "-6", "route", "add", "default", "via", "fd00:6c74::2", "dev", "second")
	check("IPv6 default route only", "second")
	p.Exec(t, p.A, "ip", "route", "add", "default", "via", p.B4.String(), "dev", p.DevA, "metric", "200")
	check("IPv4 default route wins over IPv6's", p.DevA)
	p.Exec(t, p.A, "ip", "route", "add", "default", "via", "10.201.0.2", "dev", "second", "metric", "100")
	check("lowest IPv4 metric", "second")
	p.Exec(t, p.A, "ip", "route", "flush", "default")
	p.Exec(t, p.A, "ip", "-6", "route", "flush", "default")
	p.Exec(t, p.A, "ip", "link", "set", p.DevA, "down")
	check("first interface down: the next", "second")
	p.Exec(t, p.A, "ip", "link", "set", "second", "down")
	check("nothing up", "")
}

// TestInterfaceAddrs lists a namespace's addresses, per interface and for
// "any".
func TestInterfaceAddrs(t *testing.T) {
	p := testenv.NetnsPair(t)
	var dev, any []netip.Addr
	err := testenv.InNetns(p.B, func() error {
		var err error
		if dev, err = InterfaceAddrs(p.DevB); err != nil {
			return err
		}
		any, err = InterfaceAddrs(AnyInterface)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dev, p.B4) || !slices.Contains(dev, p.B6) || slices.Contains(dev, p.A4) {
		t.Errorf("%s: %v, want %v and %v", p.DevB, dev, p.B4, p.B6)
	}
	for _, a := range dev {
		if a.Is4In6() {
			t.Errorf("IPv4-mapped address %v", a)
		}
	}
	for _, want := range []netip.Addr{p.B4, p.B6, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		if !slices.Contains(any, want) {
			t.Errorf("any: %v lacks %v", any, want)
		}
	}
}

// TestLiveLinkType checks the link type per kind of interface.
func TestLiveLinkType(t *testing.T) {
	p := testenv.NetnsPair(t)
	testenv.InNetns(p.B, func() error {
		for iface, want := range map[string]uint16{p.DevB: 1, "lo": 1, AnyInterface: 101, "absent0": 1} {
			if got := LiveLinkType(iface); got != want {
				t.Errorf("LiveLinkType(%q) = %d, want %d", iface, got, want)
			}
		}
		return nil
	})
}

// TestOpenLive_VLAN replays a capture of the same TCP connection untagged,
// in VLAN 42 and in QinQ 10/20 onto a veth (this kernel has no VLAN
// links). The kernel takes the outer tag off each tagged frame before the
// ring: the source reports it as Info.VLAN, the bytes without it, and the
// length on the wire with it, as in the file and as tcpdump beside says.
func TestOpenLive_VLAN(t *testing.T) {
	tcpreplay := testenv.RequireTool(t, "tcpreplay")
	path := filepath.Join(pcapsDir(t), "conformance", "zeek-vlan-collisions.pcap")
	type expected struct {
		vlan   int
		length int
		data   []byte // the frame without its outer tag
	}
	var want []expected
	file, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, info, err := file.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e := expected{vlan: -1, length: info.Length, data: bytes.Clone(data)}
		if et := binary.BigEndian.Uint16(data[12:]); et == 0x8100 || et == 0x88a8 {
			e.vlan = int(binary.BigEndian.Uint16(data[14:]) & 0xfff)
			e.data = append(bytes.Clone(data[:12]), data[16:]...)
		}
		want = append(want, e)
	}
	file.Close()
	vlans := map[int]int{}
	for _, e := range want {
		vlans[e.vlan]++
	}
	if vlans[-1] == 0 || vlans[42] == 0 || vlans[10] == 0 {
		t.Fatalf("%s: VLANs %v, want untagged, 42 and 10", path, vlans)
	}

	p := testenv.NetnsPair(t)
	// Room for the 1522-byte QinQ frames (a 1500-byte MTU allows one tag).
	p.Exec(t, p.A, "ip", "link", "set", p.DevA, "mtu", "1600")
	p.Exec(t, p.B, "ip", "link", "set", p.DevB, "mtu", "1600")
	td := startTcpdump(t, p, p.B, p.DevB)
	src := openIn(t, p.B, LiveConfig{Interface: p.DevB})
	p.Exec(t, p.A, tcpreplay, "-q", "-i", p.DevA, "--pps", "1000", path)

	// Frames of the replay, in order, recognised by their bytes.
	matcher := func(next *int) func(f frame) bool {
		return func(f frame) bool {
			if *next >= len(want) {
				return false
			}
			e := want[*next]
			n := min(len(e.data), len(f.data))
			if n < 54 || !bytes.Equal(f.data[:n], e.data[:n]) {
				return false
			}
			*next++
			return true
		}
	}
	var matched []frame
	next := 0
	match := matcher(&next)
	readFrames(t, src, 15*time.Second, func(fs []frame) bool {
		if f := fs[len(fs)-1:]; len(f) == 1 && match(f[0]) {
			matched = append(matched, f[0])
		}
		return next == len(want)
	})
	if len(matched) != len(want) {
		t.Fatalf("source: %d of the %d replayed frames, in order", len(matched), len(want))
	}
	for i, f := range matched {
		e := want[i]
		if f.info.VLAN != e.vlan || f.info.Length != e.length || f.info.CaptureLength != min(len(e.data), DefaultSnaplen) {
			t.Errorf("frame %d: VLAN %d, length %d, captured %d; want VLAN %d, length %d, captured %d",
				i+1, f.info.VLAN, f.info.Length, f.info.CaptureLength, e.vlan, e.length, min(len(e.data), DefaultSnaplen))
		}
	}

	// tcpdump beside counts the same lengths (libpcap puts the tag back).
	deadline := time.Now().Add(10 * time.Second)
	var lengths []int
	for {
		lengths = lengths[:0]
		for _, f := range td.frames(t) {
			for _, e := range want {
				if f.info.Length == e.length && len(f.data) >= 54 && bytes.Equal(f.data[:12], e.data[:12]) &&
					f.info.CaptureLength == f.info.Length && bytes.HasSuffix(f.data, e.data[len(e.data)-20:]) {
					lengths = append(lengths, f.info.Length)
					break
				}
			}
		}
		if len(lengths) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	td.stop(t)
	var mine []int
	for _, f := range matched {
		mine = append(mine, f.info.Length)
	}
	if !slices.Equal(lengths, mine) {
		t.Errorf("lengths: source %v, tcpdump %v", mine, lengths)
	}
}

// TestOpenLive_Promiscuous checks that promiscuous mode is asked for only
// when configured, and given back at Close.
func TestOpenLive_Promiscuous(t *testing.T) {
	p := testenv.NetnsPair(t)
	promiscuity := func() string {
		out := p.Exec(t, p.B, "ip", "-d", "link", "show", "dev", p.DevB)
		f := strings.Fields(out[strings.Index(out, "promiscuity"):])
		return f[1]
	}
	plain := openIn(t, p.B, LiveConfig{Interface: p.DevB})
	if got := promiscuity(); got != "0" {
		t.Errorf("promiscuity %s without Promiscuous, want 0", got)
	}
	promisc := openIn(t, p.B, LiveConfig{Interface: p.DevB, Promiscuous: true})
	if got := promiscuity(); got != "1" {
		t.Errorf("promiscuity %s with Promiscuous, want 1", got)
	}
	promisc.Close()
	plain.Close()
	if got := promiscuity(); got != "0" {
		t.Errorf("promiscuity %s after Close, want 0", got)
	}
}

// TestOpenLive_StatsAndClose reads on one goroutine while another polls
// Stats (run with -race), then checks Close: the counters are final and
// ReadPacket returns ErrClosed. An idle source returns ErrTimeout after
// about its PollTimeout.
func TestOpenLive_StatsAndClose(t *testing.T) {
	p := testenv.NetnsPair(t)
	src := openIn(t, p.B, LiveConfig{Interface: "lo", PollTimeout: 20 * time.Millisecond})
	stop := make(chan struct{})
	polled := make(chan Stats)
	go func() {
		var last Stats
		for {
			select {
			case <-stop:
				polled <- last
				return
			default:
			}
			st, err := src.Stats()
			if err != nil {
				t.Error(err)
			}
			if st.Received < last.Received {
				t.Errorf("Received went back from %d to %d", last.Received, st.Received)
			}
			last = st
		}
	}()
	p.Exec(t, p.B, "ping", "-c", "20", "-i", "0.01", "127.0.0.1")
	got := readFrames(t, src, 10*time.Second, func(fs []frame) bool {
		return countFrames(fs, func(c pktClass) bool { return c.isEcho() }) >= 40
	})
	close(stop)
	last := <-polled
	if n := countFrames(got, func(c pktClass) bool { return c.isEcho() }); n != 40 {
		t.Errorf("read %d echo frames on lo, want 40 (each once)", n)
	}

	begin := time.Now()
	if _, _, err := src.ReadPacket(); err != ErrTimeout {
		t.Errorf("idle read: %v, want ErrTimeout", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("idle read took %v with a 20ms poll timeout", d)
	}

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	final, err := src.Stats()
	if err != nil || final.Received < last.Received || final.Received < uint64(len(got)) {
		t.Errorf("after Close: %+v (%v); last polled %+v, read %d", final, err, last, len(got))
	}
	again, _ := src.Stats()
	if again != final {
		t.Errorf("Stats after Close changed: %+v then %+v", final, again)
	}
	if _, _, err := src.ReadPacket(); err != ErrClosed {
		t.Errorf("ReadPacket after Close: %v, want ErrClosed", err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestOpenLive_Drops floods a source whose ring is as small as allowed
// and which is not read meanwhile: the kernel counts the frames that found
// no room as Dropped, within Received, and every other frame is read.
func TestOpenLive_Drops(t *testing.T) {
	p := testenv.NetnsPair(t)
	src := openIn(t, p.B, LiveConfig{Interface: p.DevB, RingBytes: MinRingBytes})
	p.Exec(t, p.A, "ping", "-q", "-f", "-c", "3000", p.B4.String())
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	got := readUntilIdle(t, src)
	st2, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Dropped == 0 || st.Received < 6000 {
		t.Fatalf("stats %+v after 6000 frames into a %d-byte ring, want drops", st, MinRingBytes)
	}
	// Every frame in the ring when the counters were read is read; no
	// frame is read that the kernel did not count as delivered.
	if n := uint64(len(got)); n < st.Received-st.Dropped || n > st2.Received-st2.Dropped {
		t.Errorf("read %d frames; kernel delivered %d (%+v) before reading, %d (%+v) after",
			n, st.Received-st.Dropped, st, st2.Received-st2.Dropped, st2)
	}
	t.Logf("stats %+v, read %d", st, len(got))
}
