//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// browser is one headless Chromium (Debian's chromium package) driven by
// chromedp over the DevTools protocol, shared by a test's subtests: each
// opens its own tab.
type browser struct {
	ctx       context.Context // chromedp's context of the browser
	artifacts string          // the directory screenshots go to
	out       *testenv.Buffer // Chromium's own output, logged on failure
}

// browserTimeout bounds a browser's whole life (its tests included).
const browserTimeout = 4 * time.Minute

// startBrowser starts Chromium, or skips t when it is not installed. The
// browser ends at t's cleanup.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not found (make test installs it)")
	}
	b := &browser{out: &testenv.Buffer{}, artifacts: artifactDir(t)}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // as root, Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 900),
		chromedp.Env("TZ=UTC", "LANG=en_US.UTF-8"),
		chromedp.CombinedOutput(b.out),
	)
	life, cancelLife := context.WithTimeout(context.Background(), browserTimeout)
	alloc, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		cancelLife()
		if t.Failed() {
			t.Logf("chromium output (last 4 KiB, D-Bus complaints left out):\n%s", tail(withoutDBus(b.out.String()), 4096))
		}
	})
	// The first Do starts the browser: bound it, without binding the
	// browser's life to that bound.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v\n%s", err, tail(b.out.String(), 4096))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("chromium did not start within 30 s\n%s", tail(b.out.String(), 4096))
	}
	b.ctx = ctx
	t.Logf("screenshots go to %s", b.artifacts)
	return b
}

// withoutDBus drops Chromium's complaints about the missing system bus,
// which say nothing about the test.
func withoutDBus(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "dbus") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// artifactDir is $LIGHTSHARK_ARTIFACTS, else bin/test-artifacts/dashboard
// under the module root (bin/ is ignored by git).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LIGHTSHARK_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testenv.ModuleRoot(t), "bin", "test-artifacts", "dashboard")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact directory: %v", err)
	}
	// A failure's screenshot from an earlier run would mislead.
	old, _ := filepath.Glob(filepath.Join(dir, "FAIL-*.png"))
	for _, f := range old {
		os.Remove(f)
	}
	return dir
}

// tab is one browser tab on one dashboard, with the console watch that
// fails the test on any JavaScript error or warning it did not expect.
type tab struct {
	b       *browser
	name    string // prefixes its screenshots
	base    string // the dashboard's origin, "http://127.0.0.1:PORT"
	ctx     context.Context
	console *consoleWatch
}

// newTab opens a tab for the dashboard at base; it closes at t's cleanup,
// which fails t on console entries that nobody checked.
func (b *browser) newTab(t *testing.T, name, base string) *tab {
	t.Helper()
	tb := &tab{b: b, name: name, base: base, console: &consoleWatch{}}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(tb.console.listen))
	tb.ctx = ctx
	t.Cleanup(func() {
		tb.console.check(t)
		cancel()
	})
	// The first Do opens the tab and enables the runtime and log domains
	// (chromedp enables them on attach; Log.enable again costs nothing and
	// says what the watch relies on).
	tctx, tcancel := context.WithTimeout(ctx, 20*time.Second)
	defer tcancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	if _, err := chromedp.Call(tctx, cdplog.Enable, struct{}{}); err != nil {
		t.Fatalf("Log.enable: %v", err)
	}
	return tb
}

// do runs chromedp actions on the tab within d.
func (tb *tab) do(t *testing.T, d time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.fail(t, "%s: %v", what, err)
	}
}

// navigate loads path of the dashboard.
func (tb *tab) navigate(t *testing.T, path string) {
	t.Helper()
	tb.do(t, 20*time.Second, "navigate to "+path, chromedp.Navigate(tb.base+path))
}

// eval evaluates a JavaScript expression in the tab and decodes its value
// (promises are awaited).
func eval[T any](t *testing.T, tb *tab, expr string) T {
	t.Helper()
	v, err := evalErr[T](tb, expr)
	if err != nil {
		tb.fail(t, "evaluate %s: %v", expr, err)
	}
	return v
}

func evalErr[T any](tb *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// waitJS polls a JavaScript condition every 100 ms until it is true,
// failing the test after d with the page's state and a screenshot. An
// exception in the condition counts as false (the element is not there
// yet); the condition survives reloads.
func (tb *tab) waitJS(t *testing.T, d time.Duration, what, cond string) {
	t.Helper()
	expr := "(() => { try { return !!(" + cond + "); } catch (e) { return false; } })()"
	deadline := time.Now().Add(d)
	for {
		ok, err := evalErr[bool](tb, expr)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			tb.fail(t, "timed out after %v waiting for %s (%s; last error %v)", d, what, cond, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fail ends the test with the page's state and a screenshot.
func (tb *tab) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\npage: %s%s", fmt.Sprintf(format, args...), tb.summary(), tb.failShot(t))
}

// summary describes the dashboard's state as the DOM contract shows it.
func (tb *tab) summary() string {
	s, err := evalErr[string](tb, `JSON.stringify((() => {
		const q = (s) => document.querySelector(s);
		const attr = (s, a) => q(s) ? q(s).getAttribute(a) : undefined;
		const text = (s) => q(s) ? q(s).textContent.trim().slice(0, 200) : undefined;
		return {url: location.href,
			status: attr('#conn-status', 'data-state'), statusText: text('#conn-status'),
			errorBanner: q('#error-banner') && !q('#error-banner').hidden ? text('#error-banner') : null,
			tokenDialogOpen: q('#token-dialog') ? q('#token-dialog').open : undefined,
			tokenError: text('#token-error'),
			flowDialog: q('#flow-dialog') ? {open: q('#flow-dialog').open, id: attr('#flow-dialog', 'data-flow-id'), state: attr('#flow-dialog', 'data-state'), error: text('#flow-error')} : undefined,
			focused: document.activeElement ? document.activeElement.tagName + ' ' + (document.activeElement.getAttribute('data-flow-id') || document.activeElement.id) : null,
			connRows: document.querySelectorAll('#conn-table tbody tr[data-flow-id]').length,
			flowRows: document.querySelectorAll('#flows-table tbody tr[data-flow-id]').length,
			page: attr('#flows-page', 'data-value'),
			livePoints: attr('#live-chart', 'data-points'),
			history: {total: attr('#history-chart', 'data-total'), keys: attr('#history-chart', 'data-keys'), source: attr('#history-chart', 'data-source')},
			body: document.body ? document.body.innerText.slice(0, 300) : null};
	})())`)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	return s
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// failShot saves a screenshot of the tab as it is when a step fails and
// returns a line naming it.
func (tb *tab) failShot(t *testing.T) string {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Sprintf("\n(no screenshot: %v)", err)
	}
	file := filepath.Join(tb.b.artifacts, "FAIL-"+unsafeName.ReplaceAllString(t.Name(), "_")+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		return fmt.Sprintf("\n(no screenshot: %v)", err)
	}
	return "\nscreenshot: " + file
}

// screenVariants are the sizes and colour schemes every view is shot in.
var screenVariants = []struct {
	name          string
	width, height int64
	mobile        bool
	scheme        string // prefers-color-scheme
}{
	{"desktop-dark", 1280, 900, false, "dark"},
	{"desktop-light", 1280, 900, false, "light"},
	{"phone-dark", 390, 844, true, "dark"},
	{"phone-light", 390, 844, true, "light"},
}

// screenshots saves view's PNGs in every variant (NAME-VIEW-VARIANT.png),
// then puts the tab back to the desktop size and the default scheme.
func (tb *tab) screenshots(t *testing.T, view string) {
	t.Helper()
	var files []string
	for _, v := range screenVariants {
		vp := []chromedp.EmulateViewportOption{}
		if v.mobile {
			vp = append(vp, chromedp.EmulateMobile, chromedp.EmulateScale(2))
		}
		tb.setScheme(t, v.scheme)
		tb.do(t, 10*time.Second, "emulate "+v.name, chromedp.EmulateViewport(v.width, v.height, vp...))
		tb.settle(t)
		tb.checkFit(t, view+" "+v.name, v.width)
		ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			tb.fail(t, "screenshot %s %s: %v", view, v.name, err)
		}
		file := filepath.Join(tb.b.artifacts, fmt.Sprintf("%s-%s-%s.png", tb.name, view, v.name))
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.Base(file))
	}
	tb.setScheme(t, "")
	tb.do(t, 10*time.Second, "emulate the desktop", chromedp.EmulateViewport(1280, 900))
	tb.settle(t)
	t.Logf("screenshots of %s: %s in %s", view, strings.Join(files, ", "), tb.b.artifacts)
}

// checkFit requires the page to fit the viewport's width (a page wider
// than a phone scrolls sideways as a whole; wide tables scroll inside
// their own box) and, at desktop widths, the flows table to fit its panel.
func (tb *tab) checkFit(t *testing.T, what string, width int64) {
	t.Helper()
	w := eval[[]int64](t, tb, `[document.documentElement.scrollWidth, window.innerWidth]`)
	if w[0] > w[1] || w[0] > width {
		t.Errorf("layout: %s: document.documentElement.scrollWidth %d px > window.innerWidth %d px (viewport %d px); sticking out: %s",
			what, w[0], w[1], width, eval[string](t, tb, widestElements))
	}
	if width < 1280 {
		return
	}
	tw := eval[[]int64](t, tb, `(e => [e.scrollWidth, e.clientWidth])(document.querySelector('#flows-table').parentElement)`)
	if tw[0] > tw[1] {
		t.Errorf("layout: %s: #flows-table is wider than its box: scrollWidth %d px > clientWidth %d px; widest cells: %s",
			what, tw[0], tw[1], eval[string](t, tb, `[...document.querySelectorAll('#flows-table tbody tr:first-child td')].filter(td => td.offsetWidth)
				.map(td => td.dataset.col + ' ' + td.offsetWidth + ' px').join(', ')`))
	}
}

// widestElements names the elements that stick out of the body on the
// right (which makes a phone's browser widen its layout viewport), leaving
// out those inside a scrolling or clipping box (a table in its own
// scroller is fine).
const widestElements = `(() => {
	const edge = document.body.getBoundingClientRect().right + 1;
	const clipped = (e) => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
		if (getComputedStyle(a).overflowX !== 'visible') return true; } return false; };
	const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
		(typeof e.className === 'string' && e.className.trim() ? '.' + e.className.trim().split(/\s+/).join('.') : '');
	const out = [];
	for (const e of document.querySelectorAll('body *')) {
		if (e.getBoundingClientRect().right <= edge || clipped(e)) continue;
		if (e.parentElement && e.parentElement.getBoundingClientRect().right > edge) continue; // its parent is listed
		out.push(name(e) + ' in ' + name(e.parentElement) + ' to ' + Math.round(e.getBoundingClientRect().right) + ' px: "' +
			e.textContent.trim().slice(0, 60) + '"');
	}
	return out.slice(0, 4).join('; ');
})()`

// setScheme emulates prefers-color-scheme ("" for the browser's default).
func (tb *tab) setScheme(t *testing.T, scheme string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		tb.fail(t, "emulate prefers-color-scheme %q: %v", scheme, err)
	}
}

// settle lets the page handle a resize or a scheme change (charts redraw
// on the next frames).
func (tb *tab) settle(t *testing.T) {
	t.Helper()
	eval[bool](t, tb, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() => r(true), 250))))`)
}

// consoleEntry is a JavaScript exception, a console.error/warn/assert
// call, or an error or warning of the browser's log (a failed load, a CSP
// violation, an intervention).
type consoleEntry struct {
	at     time.Time
	kind   string // "exception", "console", "log"
	level  string // console type or log level
	source string // log entries: network, security, javascript…
	text   string
	url    string
}

func (e consoleEntry) String() string {
	s := e.kind + " " + e.level
	if e.source != "" {
		s += " (" + e.source + ")"
	}
	s += ": " + e.text
	if e.url != "" {
		s += " [" + e.url + "]"
	}
	return s
}

// allowRule lets the entries a step provokes on purpose through: those
// match accepts while the step runs (and a second after it, for entries
// the browser reports late).
type allowRule struct {
	why   string
	match func(consoleEntry) bool
	until time.Time // zero while the step runs
}

// consoleWatch collects the tab's console entries from the DevTools
// protocol: Runtime.exceptionThrown, Runtime.consoleAPICalled and
// Log.entryAdded. Safe for concurrent use.
type consoleWatch struct {
	mu       sync.Mutex
	bad      []consoleEntry
	expected []string
	rules    []*allowRule
}

// listen is the tab's event listener: it runs in chromedp's loop, so it
// only records.
func (w *consoleWatch) listen(ev any) {
	var e consoleEntry
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		e = consoleEntry{kind: "exception", level: "error", text: d.Text, url: d.URL}
		if d.Exception != nil && d.Exception.Description != "" {
			e.text += " " + d.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		switch ev.Type {
		case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeWarning, runtime.ConsoleAPICalledTypeAssert:
		default:
			return
		}
		var parts []string
		for _, a := range ev.Args {
			switch {
			case a.Description != "":
				parts = append(parts, a.Description)
			case len(a.Value) > 0:
				var s string
				if json.Unmarshal(a.Value, &s) == nil {
					parts = append(parts, s)
				} else {
					parts = append(parts, string(a.Value))
				}
			default:
				parts = append(parts, string(a.Type))
			}
		}
		e = consoleEntry{kind: "console", level: string(ev.Type), text: strings.Join(parts, " ")}
		if ev.StackTrace != nil && len(ev.StackTrace.CallFrames) > 0 {
			e.url = ev.StackTrace.CallFrames[0].URL
		}
	case *cdplog.EventEntryAdded:
		en := ev.Entry
		if en.Level != cdplog.EntryLevelError && en.Level != cdplog.EntryLevelWarning {
			return
		}
		e = consoleEntry{kind: "log", level: string(en.Level), source: string(en.Source), text: en.Text, url: en.URL}
	default:
		return
	}
	e.at = time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.rules {
		if (r.until.IsZero() || !e.at.After(r.until)) && r.match(e) {
			w.expected = append(w.expected, fmt.Sprintf("%s (expected: %s)", e, r.why))
			return
		}
	}
	w.bad = append(w.bad, e)
}

// allow lets entries that match through until stop is called (and one
// second after).
func (w *consoleWatch) allow(why string, match func(consoleEntry) bool) (stop func()) {
	r := &allowRule{why: why, match: match}
	w.mu.Lock()
	w.rules = append(w.rules, r)
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		r.until = time.Now().Add(time.Second)
	}
}

// check fails t on every entry no step expected since the last check, and
// logs the expected ones.
func (w *consoleWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	bad, expected := w.bad, w.expected
	w.bad, w.expected = nil, nil
	w.mu.Unlock()
	for _, e := range expected {
		t.Logf("console: %s", e)
	}
	for _, e := range bad {
		t.Errorf("console: %s", e)
	}
}

// networkErrorsTo matches the browser's log entries about requests to the
// dashboard's origin (HTTP or WebSocket) whose text contains what (e.g.
// "401"; "" for any).
func networkErrorsTo(base, what string) func(consoleEntry) bool {
	ws := "ws" + strings.TrimPrefix(base, "http")
	return func(e consoleEntry) bool {
		if e.kind != "log" || e.source != "network" {
			return false
		}
		ours := strings.HasPrefix(e.url, base+"/") || strings.HasPrefix(e.url, ws+"/") ||
			strings.Contains(e.text, base+"/") || strings.Contains(e.text, ws+"/")
		return ours && strings.Contains(e.text, what)
	}
}
