package ipctest

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards each connection to its socket to a target socket, copying
// in small chunks, and cuts connections on demand: a cut lands anywhere,
// mid-frame included, as a crash or a network fault would. Safe for
// concurrent use.
type Proxy struct {
	// Path is the proxy's own socket.
	Path   string
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	pairs  map[*pair]struct{}
	cuts   int
}

type pair struct{ client, server net.Conn }

// StartProxy listens on a new socket and forwards to target. It stops at
// cleanup.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{Path: SocketPath(t), target: target, pairs: make(map[*pair]struct{})}
	ln, err := net.Listen("unix", p.Path)
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("unix", p.target)
		if err != nil {
			c.Close() // the server is down: the client sees a refused session
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.copy(pr, s, c)
		go p.copy(pr, c, s)
	}
}

// copy forwards src to dst in chunks of at most 512 bytes, so that a cut
// often falls inside a frame.
func (p *Proxy) copy(pr *pair, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 512)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.drop(pr, nil)
}

// drop closes both ends of pr, first the one given.
func (p *Proxy) drop(pr *pair, first net.Conn) bool {
	p.mu.Lock()
	_, ok := p.pairs[pr]
	delete(p.pairs, pr)
	p.mu.Unlock()
	if first != nil {
		first.Close()
	}
	pr.client.Close()
	pr.server.Close()
	return ok
}

// CutClientSide closes every proxied connection, the client's end first,
// and returns how many it cut.
func (p *Proxy) CutClientSide() int { return p.cut(true) }

// CutServerSide closes every proxied connection, the server's end first,
// and returns how many it cut.
func (p *Proxy) CutServerSide() int { return p.cut(false) }

func (p *Proxy) cut(clientFirst bool) int {
	p.mu.Lock()
	prs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		prs = append(prs, pr)
	}
	p.mu.Unlock()
	n := 0
	for _, pr := range prs {
		first := pr.server
		if clientFirst {
			first = pr.client
		}
		if p.drop(pr, first) {
			n++
		}
	}
	p.mu.Lock()
	p.cuts += n
	p.mu.Unlock()
	return n
}

// Cuts returns how many connections were cut so far.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.cut(true)
	p.wg.Wait()
}
