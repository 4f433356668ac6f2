// Package e2e holds LightShark-mini's system tests: the real binaries
// (lightshark-capturer, lightshark-apiserver) built once, run as
// unprivileged uids in network namespaces the tests create, with real
// programs (curl, python3 -m http.server, ping, dnsmasq and dig, iperf3,
// tcpreplay) making the traffic and tcpdump capturing beside them as the
// oracle. They prove exactness end to end, survival of faults (kill -9,
// an absent API server, a full disk, SIGTERM under load), bounded behaviour
// with many WebSocket clients, and robustness against hostile packets, IPC
// frames and HTTP requests. The dashboard's browser tests
// (dashboard_test.go) drive Debian's chromium with chromedp against API
// servers fed a known capture and live traffic, with tshark as the
// oracle.
//
// Everything is in _test.go files: `make e2e` (go test ./e2e/...) runs
// them, as root with the tools of the Makefile's TEST_PKGS; without them
// every test skips with a one-line reason. No product package imports this
// one.
package e2e
