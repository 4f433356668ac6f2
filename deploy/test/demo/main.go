// Command lsdemo is the workload of the container tests (deploy/test): a
// tiny static HTTP server to watch, and a client that makes a known number
// of real requests to it and says exactly what it did.
//
//	lsdemo serve :8080
//	lsdemo get http://target:8080/ 20
//
// get makes each request on a new TCP connection and prints one JSON line
// per request ({"local": "ip:port", "remote": "ip:port", "status": 200,
// "body_bytes": N}); it exits 1 if any request fails. It is built with
// CGO_ENABLED=0 and runs in a FROM scratch image.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bodySize is the size of every response body: more than one segment's
// worth would do, but a few packets per connection keep counts readable.
const bodySize = 1200

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lsdemo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	switch {
	case len(args) == 2 && args[0] == "serve":
		return serve(ctx, args[1])
	case len(args) == 3 && args[0] == "get":
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 1 {
			return fmt.Errorf("get: %q is not a positive count", args[2])
		}
		return get(ctx, args[1], n, stdout)
	}
	return errors.New("usage: lsdemo serve ADDR | lsdemo get URL N")
}

func serve(ctx context.Context, addr string) error {
	body := []byte(strings.Repeat("x", bodySize-1) + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(cctx)
	}
}

// result is what the client did for one request.
type result struct {
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Status    int    `json:"status"`
	BodyBytes int64  `json:"body_bytes"`
}

func get(ctx context.Context, url string, n int, stdout io.Writer) error {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	enc := json.NewEncoder(stdout)
	for i := 0; i < n; i++ {
		var r result
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			r.Local = info.Conn.LocalAddr().String()
			r.Remote = info.Conn.RemoteAddr().String()
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("request %d: %w", i+1, err)
		}
		r.BodyBytes, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("request %d: read body: %w", i+1, err)
		}
		r.Status = resp.StatusCode
		if err := enc.Encode(r); err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("request %d: status %d", i+1, r.Status)
		}
	}
	return nil
}
