// Package bench measures LightShark-mini side by side with tcpdump and
// tshark (make bench), and generates the synthetic captures it measures on.
//
// The measurements are Go benchmarks in this package's _test.go files:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./bench
//
// This file and pcapw.go hold the capture generator: deterministic (seeded)
// classic pcap files of realistic traffic (Mix) and of exactly N concurrent
// flows (Concurrent). The package imports the standard library only, and no
// product package may import it.
package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"
)

// DefaultStart is the capture time of the first generated packet.
var DefaultStart = time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)

// Output is one file the generator writes: every frame, cut to Snaplen
// bytes (0 keeps whole frames; the record's original length is always the
// whole frame's).
type Output struct {
	W       io.Writer
	Snaplen int
}

// GenStats describes a generated file.
type GenStats struct {
	Packets uint64 `json:"packets"`
	// Bytes is the sum of the frames' lengths on the wire.
	Bytes uint64 `json:"bytes"`
	// Conversations counts TCP connections, DNS exchanges, UDP streams and
	// ping sessions started. The flow table may count a few less (ICMP
	// flows are keyed by address pair and type, not by echo identifier).
	Conversations int `json:"conversations"`
	TCP           int `json:"tcp"`
	UDP           int `json:"udp"`
	ICMP          int `json:"icmp"`
	IPv6          int `json:"ipv6"` // conversations over IPv6
	NonIP         int `json:"non_ip"`
	// MaxConcurrent is the largest number of conversations in progress at
	// once (Concurrent: all of them).
	MaxConcurrent int `json:"max_concurrent"`
	// Duration is the capture time from the first to the last packet.
	Duration time.Duration `json:"duration_ns"`
}

// Mix describes a capture of realistic traffic as a host or gateway sees
// it: TCP connections (handshake, requests and responses of heavy-tailed
// sizes in MSS-sized segments with delayed ACKs, a few retransmissions,
// FIN or RST close, some rejected or unanswered), DNS queries and answers
// over UDP, longer UDP streams (QUIC- and RTP-like), ICMP and ICMPv6 echo,
// a little ARP, about 15% IPv6. Frames are Ethernet, 60 to 1514 bytes,
// with valid IPv4, TCP, UDP and ICMP checksums; timestamps increase.
//
// The same Mix always writes the same bytes.
type Mix struct {
	Seed uint64
	// Packets is the number of frames to write.
	Packets int
	// Concurrency is the number of conversations in progress at once
	// (default 1500).
	Concurrency int
	// Rate is the mean packet rate in capture time, packets per second
	// (default 40000).
	Rate float64
	// Start is the first packet's time (default DefaultStart).
	Start time.Time
}

// Write generates the capture into every output in one pass.
func (m Mix) Write(outs ...Output) (GenStats, error) {
	if m.Concurrency <= 0 {
		m.Concurrency = 1500
	}
	if m.Rate <= 0 {
		m.Rate = 40000
	}
	g, err := newGen(m.Seed, m.Start, outs)
	if err != nil {
		return GenStats{}, err
	}
	meanGap := max(1, int(1e6/m.Rate)) // microseconds
	active := make([]*conv, 0, m.Concurrency)
	for int(g.stats.Packets) < m.Packets {
		for len(active) < m.Concurrency {
			active = append(active, g.newConv())
		}
		g.stats.MaxConcurrent = max(g.stats.MaxConcurrent, len(active))
		if g.rng.IntN(20000) == 0 {
			g.advance(meanGap)
			if err := g.arp(); err != nil {
				return g.stats, err
			}
			continue
		}
		// A conversation sends a burst: one packet for small exchanges, up
		// to a congestion window's worth for bulk transfers.
		i := g.rng.IntN(len(active))
		c := active[i]
		left := len(c.steps) - c.next
		burst := 1
		if left > 8 {
			burst = 1 + g.rng.IntN(min(left, 2+len(c.steps)/32, 24))
		}
		for ; burst > 0 && int(g.stats.Packets) < m.Packets; burst-- {
			g.advance(meanGap)
			if err := g.emit(c, c.steps[c.next]); err != nil {
				return g.stats, err
			}
			c.next++
		}
		if c.next == len(c.steps) {
			g.free = append(g.free, c)
			active[i] = active[len(active)-1]
			active = active[:len(active)-1]
		}
	}
	return g.finish()
}

// Concurrent describes a capture of exactly Flows TCP connections over
// IPv4 that are all open at once: every handshake first, then Rounds
// packets per connection in round-robin order (requests and responses in
// turn), then every connection's FIN exchange. Packets are 1 µs apart.
type Concurrent struct {
	Seed  uint64
	Flows int
	// Rounds is the number of data packets per connection (default 4).
	Rounds int
	// Start is the first packet's time (default DefaultStart).
	Start time.Time
}

// Write generates the capture into every output in one pass.
func (cc Concurrent) Write(outs ...Output) (GenStats, error) {
	if cc.Rounds <= 0 {
		cc.Rounds = 4
	}
	if cc.Flows > 1<<22 {
		return GenStats{}, fmt.Errorf("%d flows: at most %d", cc.Flows, 1<<22)
	}
	g, err := newGen(cc.Seed, cc.Start, outs)
	if err != nil {
		return GenStats{}, err
	}
	convs := make([]conv, cc.Flows)
	clients := make([]host, cc.Flows)
	servers := make([]host, 16)
	for i := range servers {
		servers[i] = g.newHost4([4]byte{198, 18, 0, byte(i + 1)}, true)
	}
	for i := range convs {
		a := uint32(10<<24|64<<16) + uint32(i) + 1 // 10.64.0.1 onwards
		clients[i] = g.newHost4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}, false)
		c := &convs[i]
		*c = conv{kind: kindTCP, proto: protoTCP, client: &clients[i], server: &servers[i%len(servers)],
			cport: uint16(32768 + i%28000), sport: 443, mss: 1448}
		g.initTCP(c)
	}
	g.stats.Conversations, g.stats.TCP, g.stats.MaxConcurrent = cc.Flows, cc.Flows, cc.Flows
	run := func(steps ...step) error {
		for i := range convs {
			for _, st := range steps {
				g.now++
				if err := g.emit(&convs[i], st); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := run(step{0, tcpSyn, 0, 0}, step{1, tcpSyn | tcpAck, 0, 0}, step{0, tcpAck, 0, 0}); err != nil {
		return g.stats, err
	}
	for r := range cc.Rounds {
		st := step{0, tcpAck | tcpPsh, 0, 120}
		if r%2 == 1 {
			st = step{1, tcpAck | tcpPsh, 0, 400}
		}
		if err := run(st); err != nil {
			return g.stats, err
		}
	}
	if err := run(step{0, tcpFin | tcpAck, 0, 0}, step{1, tcpFin | tcpAck, 0, 0}, step{0, tcpAck, 0, 0}); err != nil {
		return g.stats, err
	}
	return g.finish()
}

// Protocol numbers, TCP flags and conversation kinds.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	tcpFin = 0x01
	tcpSyn = 0x02
	tcpRst = 0x04
	tcpPsh = 0x08
	tcpAck = 0x10
)

const (
	kindTCP = iota
	kindDNS
	kindStream
	kindPing
)

// step is one packet of a conversation's script.
type step struct {
	dir   uint8 // 0: client to server; 1: server to client
	flags uint8 // TCP flags
	retx  uint8 // 1: a retransmission of the previous segment
	size  uint16
}

type host struct {
	addr [16]byte // IPv4 in the first four bytes unless v6
	v6   bool
	mac  [6]byte
	ipID uint16
	port uint16 // next ephemeral port
}

// conv is one conversation in progress: its endpoints, its script and the
// per-direction TCP state the next packet needs.
type conv struct {
	kind           uint8
	proto          uint8
	client, server *host
	cport, sport   uint16
	mss            int
	steps          []step
	next           int
	seq            [2]uint32
	tsOff          [2]uint32
	tsval          [2]uint32
	// DNS: query id, name index, qtype; ping: identifier and sequence.
	id    uint16
	name  int
	qtype uint16
	nx    bool
	icmpN uint16
}

type gen struct {
	rng   *rand.Rand
	now   int64 // capture time, Unix microseconds
	first int64
	outs  []*pcapWriter
	buf   [1514]byte
	stats GenStats
	free  []*conv

	clients4, clients6     []host
	servers4, servers6     []host
	resolvers4, resolvers6 []host
	pickServer4            *rand.Zipf
	pickServer6            *rand.Zipf
	pickName               *rand.Zipf
	names                  [][]byte // DNS names in wire format
	gateway                [6]byte  // MAC of the router every server is behind

	payload [1500]byte
	psum    [1501]uint64 // ones'-complement sums of payload[:n]
}

func newGen(seed uint64, start time.Time, outs []Output) (*gen, error) {
	if start.IsZero() {
		start = DefaultStart
	}
	g := &gen{rng: rand.New(rand.NewPCG(seed, 0x6c69676874736861))}
	g.now = start.UnixMicro()
	g.first = g.now
	for _, o := range outs {
		w, err := newPcapWriter(o.W, o.Snaplen)
		if err != nil {
			return nil, err
		}
		g.outs = append(g.outs, w)
	}
	for i := range g.payload {
		g.payload[i] = byte(g.rng.Uint32())
	}
	for n := 1; n <= len(g.payload); n++ {
		if n%2 == 0 {
			g.psum[n] = g.psum[n-2] + uint64(g.payload[n-2])<<8 + uint64(g.payload[n-1])
		} else {
			g.psum[n] = g.psum[n-1] + uint64(g.payload[n-1])<<8
		}
	}
	g.gateway = [6]byte{0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x01}
	for i := range 2000 {
		g.clients4 = append(g.clients4, g.newHost4([4]byte{10, 1 + byte(i/250), byte(i % 250), 10}, false))
	}
	for i := range 500 {
		h := host{v6: true, mac: clientMAC(uint32(100000 + i))}
		copy(h.addr[:], []byte{0xfd, 0x00, 0x6c, 0x73, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)})
		h.port = uint16(32768 + g.rng.IntN(20000))
		g.clients6 = append(g.clients6, h)
	}
	for i := range 4000 {
		g.servers4 = append(g.servers4, g.newHost4([4]byte{198, 18 + byte(i/60000), byte(i / 250), byte(1 + i%250)}, true))
	}
	for i := range 1000 {
		h := host{v6: true, mac: g.gateway}
		// 2001:db8::/32 (RFC 3849, documentation).
		copy(h.addr[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 1})
		g.servers6 = append(g.servers6, h)
	}
	g.resolvers4 = []host{g.newHost4([4]byte{10, 0, 0, 53}, false), g.newHost4([4]byte{10, 0, 0, 54}, false)}
	r6 := host{v6: true, mac: clientMAC(99)}
	copy(r6.addr[:], []byte{0xfd, 0x00, 0x6c, 0x73, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53})
	g.resolvers6 = []host{r6}
	g.pickServer4 = rand.NewZipf(g.rng, 1.2, 2, uint64(len(g.servers4)-1))
	g.pickServer6 = rand.NewZipf(g.rng, 1.2, 2, uint64(len(g.servers6)-1))
	g.pickName = rand.NewZipf(g.rng, 1.1, 1, 4999)
	zones := []string{"example.com", "example.net", "cdn.example.org", "api.example.io", "svc.cluster.local"}
	for i := range 5000 {
		g.names = append(g.names, dnsName(fmt.Sprintf("h%d.%s", i, zones[i%len(zones)])))
	}
	return g, nil
}

func clientMAC(i uint32) [6]byte {
	return [6]byte{0x02, 0x42, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func (g *gen) newHost4(a [4]byte, remote bool) host {
	h := host{ipID: uint16(g.rng.Uint32()), port: uint16(32768 + g.rng.IntN(20000))}
	copy(h.addr[:4], a[:])
	h.mac = g.gateway
	if !remote {
		h.mac = clientMAC(binary.BigEndian.Uint32(a[:]))
	}
	return h
}

func (g *gen) finish() (GenStats, error) {
	for _, w := range g.outs {
		if err := w.flush(); err != nil {
			return g.stats, err
		}
	}
	g.stats.Duration = time.Duration(g.now-g.first) * time.Microsecond
	return g.stats, nil
}

// advance moves the clock by a random gap of the given mean (at least
// 1 µs, so timestamps strictly increase).
func (g *gen) advance(mean int) {
	g.now += 1 + int64(g.rng.IntN(2*mean-1))
}

// ephemeral returns h's next ephemeral port (Linux's 32768–60999 range).
func ephemeral(h *host) uint16 {
	p := h.port
	h.port++
	if h.port > 60999 {
		h.port = 32768
	}
	return p
}

// newConv starts a conversation of a random kind and writes its script.
func (g *gen) newConv() *conv {
	var c *conv
	if n := len(g.free); n > 0 {
		c = g.free[n-1]
		g.free = g.free[:n-1]
		steps := c.steps[:0]
		*c = conv{steps: steps}
	} else {
		c = &conv{}
	}
	v6 := g.rng.IntN(100) < 15
	if v6 {
		g.stats.IPv6++
		c.client = &g.clients6[g.rng.IntN(len(g.clients6))]
	} else {
		c.client = &g.clients4[g.rng.IntN(len(g.clients4))]
	}
	server := func() *host {
		if v6 {
			return &g.servers6[g.pickServer6.Uint64()]
		}
		return &g.servers4[g.pickServer4.Uint64()]
	}
	g.stats.Conversations++
	r := g.rng.IntN(1000)
	switch {
	case r < 650:
		g.stats.TCP++
		c.kind, c.proto, c.server = kindTCP, protoTCP, server()
		c.cport, c.sport = ephemeral(c.client), tcpPort(g.rng.IntN(100))
		c.mss = 1448
		if v6 {
			c.mss = 1428
		}
		g.initTCP(c)
		g.scriptTCP(c)
	case r < 900:
		g.stats.UDP++
		c.kind, c.proto = kindDNS, protoUDP
		if v6 {
			c.server = &g.resolvers6[0]
		} else {
			c.server = &g.resolvers4[g.rng.IntN(len(g.resolvers4))]
		}
		c.cport, c.sport = uint16(32768+g.rng.IntN(28232)), 53
		c.id, c.name = uint16(g.rng.Uint32()), int(g.pickName.Uint64())
		c.qtype, c.nx = 1, g.rng.IntN(100) < 5
		if g.rng.IntN(100) < 30 {
			c.qtype = 28 // AAAA
		}
		c.steps = append(c.steps, step{dir: 0, size: c.dnsLen(g, 0)})
		if g.rng.IntN(100) < 3 {
			c.steps = append(c.steps, step{dir: 0, retx: 1, size: c.dnsLen(g, 0)}) // unanswered, retried
		} else {
			c.steps = append(c.steps, step{dir: 1, size: c.dnsLen(g, 1)})
		}
	case r < 950:
		g.stats.UDP++
		c.kind, c.proto, c.server = kindStream, protoUDP, server()
		c.cport, c.sport = ephemeral(c.client), 443
		if g.rng.IntN(3) == 0 {
			c.sport = uint16(5004 + 2*g.rng.IntN(8)) // RTP
		}
		n := int(boundedPareto(g.rng, 1.3, 4, 3000))
		c.steps = append(c.steps, step{dir: 0, size: 1250})
		for range n {
			if g.rng.IntN(10) < 7 {
				c.steps = append(c.steps, step{dir: 1, size: uint16(1000 + g.rng.IntN(350))})
			} else {
				c.steps = append(c.steps, step{dir: 0, size: uint16(30 + g.rng.IntN(100))})
			}
		}
	default:
		g.stats.ICMP++
		c.kind, c.server = kindPing, server()
		c.proto = protoICMP
		if v6 {
			c.proto = protoICMPv6
		}
		c.id = uint16(g.rng.Uint32())
		for range 1 + g.rng.IntN(6) {
			c.steps = append(c.steps, step{dir: 0, size: 56})
			if g.rng.IntN(100) >= 3 {
				c.steps = append(c.steps, step{dir: 1, size: 56})
			}
		}
	}
	return c
}

func tcpPort(r int) uint16 {
	switch {
	case r < 68:
		return 443
	case r < 83:
		return 80
	case r < 88:
		return 8080
	case r < 92:
		return 22
	case r < 95:
		return 5432
	case r < 98:
		return 6379
	}
	return 3306
}

// boundedPareto draws from a Pareto distribution of shape alpha between lo
// and hi.
func boundedPareto(r *rand.Rand, alpha, lo, hi float64) float64 {
	u := r.Float64()
	la, ha := math.Pow(lo, alpha), math.Pow(hi, alpha)
	return math.Pow(-(u*ha-u*la-ha)/(ha*la), -1/alpha)
}

func (g *gen) initTCP(c *conv) {
	c.seq = [2]uint32{g.rng.Uint32(), g.rng.Uint32()}
	c.tsOff = [2]uint32{g.rng.Uint32(), g.rng.Uint32()}
}

// scriptTCP writes a TCP connection: rejected (1.5%), unanswered (1%), or
// a handshake, one or more request/response exchanges and a close by FIN
// (80%), RST (12%) or nothing (still open).
func (g *gen) scriptTCP(c *conv) {
	s := c.steps
	r := g.rng.IntN(1000)
	switch {
	case r < 15:
		c.steps = append(s, step{0, tcpSyn, 0, 0}, step{1, tcpRst | tcpAck, 0, 0})
		return
	case r < 25:
		c.steps = append(s, step{0, tcpSyn, 0, 0}, step{0, tcpSyn, 1, 0}, step{0, tcpSyn, 1, 0})
		return
	}
	s = append(s, step{0, tcpSyn, 0, 0}, step{1, tcpSyn | tcpAck, 0, 0}, step{0, tcpAck, 0, 0})
	exchanges := 1
	for exchanges < 8 && g.rng.IntN(100) < 45 {
		exchanges++
	}
	for range exchanges {
		var req int
		switch q := g.rng.IntN(100); {
		case q < 70:
			req = 80 + g.rng.IntN(700)
		case q < 95:
			req = 800 + g.rng.IntN(2200)
		default:
			req = int(boundedPareto(g.rng, 1.1, 3000, 2e6))
		}
		s = g.transfer(s, 0, req, c.mss)
		s = g.transfer(s, 1, int(boundedPareto(g.rng, 0.8, 800, 8e6)), c.mss)
	}
	closer := uint8(g.rng.IntN(2))
	switch q := g.rng.IntN(100); {
	case q < 80:
		s = append(s, step{closer, tcpFin | tcpAck, 0, 0}, step{1 - closer, tcpFin | tcpAck, 0, 0}, step{closer, tcpAck, 0, 0})
	case q < 92:
		s = append(s, step{closer, tcpRst | tcpAck, 0, 0})
	}
	c.steps = s
}

// transfer appends n bytes sent in direction dir as segments of at most
// mss bytes, the receiver acknowledging every second segment and the last;
// 0.3% of segments are sent twice.
func (g *gen) transfer(s []step, dir uint8, n, mss int) []step {
	for seg := 1; n > 0; seg++ {
		size := min(n, mss)
		n -= size
		flags := uint8(tcpAck)
		if n == 0 {
			flags |= tcpPsh
		}
		s = append(s, step{dir, flags, 0, uint16(size)})
		if g.rng.IntN(1000) < 3 {
			s = append(s, step{dir, flags, 1, uint16(size)})
		}
		if seg%2 == 0 || n == 0 {
			s = append(s, step{1 - dir, tcpAck, 0, 0})
		}
	}
	return s
}

// emit writes the packet st of conversation c to every output.
func (g *gen) emit(c *conv, st step) error {
	src, dst := c.client, c.server
	sport, dport := c.cport, c.sport
	if st.dir == 1 {
		src, dst, sport, dport = dst, src, dport, sport
	}
	b := g.buf[:]
	copy(b[0:6], dst.mac[:])
	copy(b[6:12], src.mac[:])
	ipLen := 20
	if src.v6 {
		ipLen = 40
	}
	l4 := b[14+ipLen:]
	var l4Len int
	switch c.kind {
	case kindTCP:
		l4Len = g.tcp(c, st, l4, sport, dport)
	case kindDNS:
		l4Len = 8 + c.dns(g, st.dir, l4[8:])
		g.udp(l4, sport, dport, l4Len)
	case kindStream:
		l4Len = 8 + int(st.size)
		copy(l4[8:], g.payload[:st.size])
		g.udp(l4, sport, dport, l4Len)
	case kindPing:
		l4Len = 8 + int(st.size)
		typ := uint8(8 - 8*st.dir) // echo request 8, reply 0
		if c.proto == protoICMPv6 {
			typ = 128 + st.dir
		}
		if st.dir == 0 {
			c.icmpN++
		}
		l4[0], l4[1], l4[2], l4[3] = typ, 0, 0, 0
		binary.BigEndian.PutUint16(l4[4:], c.id)
		binary.BigEndian.PutUint16(l4[6:], c.icmpN)
		copy(l4[8:], g.payload[:st.size])
	}
	ttl := uint8(64)
	if st.dir == 1 {
		ttl = 53
	}
	if src.v6 {
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
		ip := b[14:54]
		binary.BigEndian.PutUint32(ip[0:], 0x60000000|uint32(c.cport)<<4)
		binary.BigEndian.PutUint16(ip[4:], uint16(l4Len))
		ip[6], ip[7] = c.proto, ttl
		copy(ip[8:24], src.addr[:])
		copy(ip[24:40], dst.addr[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		ip := b[14:34]
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:], uint16(20+l4Len))
		binary.BigEndian.PutUint16(ip[4:], src.ipID)
		src.ipID++
		binary.BigEndian.PutUint16(ip[6:], 0)
		if c.proto == protoTCP {
			binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		}
		ip[8], ip[9] = ttl, c.proto
		ip[10], ip[11] = 0, 0
		copy(ip[12:16], src.addr[:4])
		copy(ip[16:20], dst.addr[:4])
		binary.BigEndian.PutUint16(ip[10:], fold(sum(ip)))
	}
	// Transport checksum: the pseudo-header (none for ICMPv4), the header
	// and the payload, whose sum is precomputed when it is g.payload.
	var s uint64
	if c.proto != protoICMP {
		s = pseudoSum(src, dst, c.proto, l4Len)
	}
	hdrLen := l4Len
	switch c.kind {
	case kindTCP:
		hdrLen = l4Len - int(st.size)
	case kindStream, kindPing:
		hdrLen = 8
	}
	s += sum(l4[:hdrLen])
	if hdrLen < l4Len {
		s += g.psum[l4Len-hdrLen]
	}
	ck := l4[16:18] // TCP
	switch c.proto {
	case protoUDP:
		ck = l4[6:8]
	case protoICMP, protoICMPv6:
		ck = l4[2:4]
	}
	c16 := fold(s)
	if c.proto == protoUDP && c16 == 0 {
		c16 = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(ck, c16)

	n := 14 + ipLen + l4Len
	for ; n < 60; n++ {
		b[n] = 0 // Ethernet padding
	}
	return g.write(b[:n])
}

func (g *gen) write(frame []byte) error {
	for _, w := range g.outs {
		if err := w.write(g.now, frame); err != nil {
			return fmt.Errorf("write packet: %w", err)
		}
	}
	g.stats.Packets++
	g.stats.Bytes += uint64(len(frame))
	return nil
}

// tcp writes the TCP header (with Linux's options: MSS, SACK permitted,
// timestamps and window scale on SYNs, timestamps otherwise, none on RSTs)
// and payload, and returns the segment's length.
func (g *gen) tcp(c *conv, st step, b []byte, sport, dport uint16) int {
	d := st.dir
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	seq := c.seq[d]
	if st.retx == 1 {
		seq -= uint32(st.size)
		if st.flags&tcpSyn != 0 {
			seq--
		}
	}
	var ack uint32
	if st.flags&tcpAck != 0 {
		ack = c.seq[1-d]
	}
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[13] = st.flags
	binary.BigEndian.PutUint16(b[16:], 0)
	binary.BigEndian.PutUint16(b[18:], 0)
	c.tsval[d] = uint32(g.now/1000) + c.tsOff[d]
	hl := 32
	win := uint16(502)
	switch {
	case st.flags&tcpSyn != 0:
		hl, win = 40, 64240
		o := b[20:40]
		copy(o, []byte{2, 4, byte(c.mss >> 8), byte(c.mss), 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7})
		binary.BigEndian.PutUint32(o[8:], c.tsval[d])
		if st.flags&tcpAck != 0 {
			win = 65160
			binary.BigEndian.PutUint32(o[12:], c.tsval[1-d])
		}
	case st.flags&tcpRst != 0:
		hl, win = 20, 0
	default:
		o := b[20:32]
		o[0], o[1], o[2], o[3] = 1, 1, 8, 10
		binary.BigEndian.PutUint32(o[4:], c.tsval[d])
		binary.BigEndian.PutUint32(o[8:], c.tsval[1-d])
	}
	b[12] = byte(hl/4) << 4
	binary.BigEndian.PutUint16(b[14:], win)
	copy(b[hl:], g.payload[:st.size])
	if st.retx == 0 {
		c.seq[d] += uint32(st.size)
		if st.flags&(tcpSyn|tcpFin) != 0 {
			c.seq[d]++
		}
	}
	return hl + int(st.size)
}

func (g *gen) udp(b []byte, sport, dport uint16, length int) {
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(length))
	binary.BigEndian.PutUint16(b[6:], 0)
}

// dnsName encodes a domain name in DNS wire format (RFC 1035, 3.1).
func dnsName(name string) []byte {
	var b []byte
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			b = append(b, byte(i-start))
			b = append(b, name[start:i]...)
			start = i + 1
		}
	}
	return append(b, 0)
}

// dnsLen is the length of c's DNS query (dir 0) or response (dir 1).
func (c *conv) dnsLen(g *gen, dir uint8) uint16 {
	n := 12 + len(g.names[c.name]) + 4
	if dir == 1 && !c.nx {
		n += 12 + 4
		if c.qtype == 28 {
			n += 12
		}
	}
	return uint16(n)
}

// dns writes c's query or response into b and returns its length.
func (c *conv) dns(g *gen, dir uint8, b []byte) int {
	binary.BigEndian.PutUint16(b[0:], c.id)
	flags, an := uint16(0x0100), uint16(0) // query, recursion desired
	if dir == 1 {
		flags, an = 0x8180, 1 // response, RD, RA, no error
		if c.nx {
			flags, an = 0x8183, 0 // NXDOMAIN
		}
	}
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint32(b[8:], 0)
	n := 12 + copy(b[12:], g.names[c.name])
	binary.BigEndian.PutUint16(b[n:], c.qtype)
	binary.BigEndian.PutUint16(b[n+2:], 1) // IN
	n += 4
	if an == 1 {
		binary.BigEndian.PutUint16(b[n:], 0xc00c) // pointer to the question's name
		binary.BigEndian.PutUint16(b[n+2:], c.qtype)
		binary.BigEndian.PutUint16(b[n+4:], 1)
		binary.BigEndian.PutUint32(b[n+6:], 300)
		rdlen := 4
		if c.qtype == 28 {
			rdlen = 16
		}
		binary.BigEndian.PutUint16(b[n+10:], uint16(rdlen))
		n += 12
		for i := range rdlen {
			b[n+i] = byte(c.name>>(8*(i%2))) + byte(i)
		}
		n += rdlen
	}
	return n
}

// arp writes a broadcast ARP request from one of the clients.
func (g *gen) arp() error {
	h := &g.clients4[g.rng.IntN(len(g.clients4))]
	b := g.buf[:60]
	clear(b)
	for i := range 6 {
		b[i] = 0xff
	}
	copy(b[6:12], h.mac[:])
	binary.BigEndian.PutUint16(b[12:], 0x0806)
	copy(b[14:22], []byte{0, 1, 8, 0, 6, 4, 0, 1}) // Ethernet, IPv4, request
	copy(b[22:28], h.mac[:])
	copy(b[28:32], h.addr[:4])
	copy(b[38:42], []byte{10, 1, 0, 1})
	g.stats.NonIP++
	return g.write(b)
}

// sum adds b as big-endian 16-bit words (RFC 1071), without folding.
func sum(b []byte) uint64 {
	var s uint64
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		s += v>>48 + v>>32&0xffff + v>>16&0xffff + v&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// pseudoSum is the sum of the IPv4 or IPv6 pseudo-header (RFC 793, RFC 8200
// section 8.1).
func pseudoSum(src, dst *host, proto uint8, length int) uint64 {
	if src.v6 {
		return sum(src.addr[:]) + sum(dst.addr[:]) + uint64(length) + uint64(proto)
	}
	return sum(src.addr[:4]) + sum(dst.addr[:4]) + uint64(length) + uint64(proto)
}
