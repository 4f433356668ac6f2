//go:build linux

package e2e

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// nsProxy forwards TCP connections from a loopback port of the test's own
// network namespace to addr inside namespace ns, so that a browser running
// beside the test reaches an API server that listens on the loopback of
// its namespace (apiAddr), as it does in a pod. It returns the base URL
// ("http://127.0.0.1:PORT"). A connection the API server refuses (it was
// stopped) is closed at once, as a browser sees a server that is down.
// The proxy and its connections end at cleanup.
func nsProxy(t *testing.T, ns, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dial := nsDialer(ns)
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false // closing
		}
		conns[c] = true
		return true
	}
	untrack := func(c net.Conn) {
		c.Close()
		mu.Lock()
		defer mu.Unlock()
		delete(conns, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !track(c) {
				c.Close()
				return
			}
			wg.Go(func() {
				defer untrack(c)
				dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
				up, err := dial(dctx, "tcp", addr)
				dcancel()
				if err != nil {
					return
				}
				if !track(up) {
					up.Close()
					return
				}
				defer untrack(up)
				done := make(chan struct{}, 2)
				pipe := func(dst, src net.Conn) {
					io.Copy(dst, src)
					// Half-close so that the other side sees the end of
					// what this side sent, as without a proxy.
					if tc, ok := dst.(*net.TCPConn); ok {
						tc.CloseWrite()
					}
					done <- struct{}{}
				}
				go pipe(up, c)
				go pipe(c, up)
				<-done
				select { // the other side has a moment to finish too
				case <-done:
				case <-time.After(5 * time.Second):
				}
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}
