package metrics

import (
	"bytes"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parsed is one sample as Prometheus' own text parser read it.
type parsed struct {
	typ    string // COUNTER, GAUGE
	help   string
	labels map[string]string
	value  float64
}

// parse reads text with Prometheus' own parser (expfmt), failing the test
// on error, and returns the samples by family name. A family without
// samples is left out by the parser. (The parser's types
// come from client_model, which this module does not require directly.)
func parse(t testing.TB, text string) map[string][]parsed {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("expfmt parse: %v\n%s", err, text)
	}
	out := make(map[string][]parsed)
	for name, f := range fams {
		typ := f.GetType().String()
		for _, m := range f.GetMetric() {
			l := make(map[string]string)
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			v := m.GetGauge().GetValue()
			if typ == "COUNTER" {
				v = m.GetCounter().GetValue()
			}
			out[name] = append(out[name], parsed{typ: typ, help: f.GetHelp(), labels: l, value: v})
		}
	}
	return out
}

func TestRegistry_WriteText(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("test_packets_total", "Packets by proto.\nSecond line with a \\ backslash.", "proto", "direction")
	c.Add(10, "tcp", "inbound")
	c.Inc("tcp", "inbound")
	c.Add(5, "udp", "outbound")
	c.Add(-3, "udp", "outbound") // ignored: counters never go down
	g := r.NewGauge("test_active_flows", "Active flows.")
	g.Set(7)
	g.Add(-2)
	hostile := "a\"b\\c\nd é"
	r.Collect("test_errors_total", "Errors by reason.", CounterType, []string{"reason"}, func(emit func(float64, ...string)) {
		emit(3, "truncated")
		emit(1, hostile)
		emit(4, "truncated") // a repeat replaces the earlier value
	})
	r.Collect("test_special", "Special values.", GaugeType, []string{"kind"}, func(emit func(float64, ...string)) {
		emit(math.Inf(1), "inf")
		emit(math.Inf(-1), "minf")
		emit(math.NaN(), "nan")
		emit(1.5e-9, "small")
		emit(1<<53, "big")
	})
	r.NewCounter("test_empty_total", "Nothing yet.", "x")

	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	fams := parse(t, text)

	// expfmt leaves out families without samples (test_empty_total).
	if got, want := len(fams), 4; got != want {
		t.Fatalf("got %d families, want %d:\n%s", got, want, text)
	}
	pk := fams["test_packets_total"]
	if pk[0].typ != "COUNTER" {
		t.Errorf("test_packets_total type: got %v, want COUNTER", pk[0].typ)
	}
	if got, want := pk[0].help, "Packets by proto.\nSecond line with a \\ backslash."; got != want {
		t.Errorf("help: got %q, want %q", got, want)
	}
	want := map[string]float64{"tcp/inbound": 11, "udp/outbound": 5}
	for _, m := range pk {
		k := m.labels["proto"] + "/" + m.labels["direction"]
		if m.value != want[k] {
			t.Errorf("packets %s: got %v, want %v", k, m.value, want[k])
		}
		delete(want, k)
	}
	if len(want) != 0 {
		t.Errorf("missing samples %v", want)
	}
	if g := fams["test_active_flows"]; g[0].typ != "GAUGE" || g[0].value != 5 {
		t.Errorf("gauge: got %+v, want GAUGE 5", g)
	}
	errs := map[string]float64{}
	for _, m := range fams["test_errors_total"] {
		errs[m.labels["reason"]] = m.value
	}
	if errs["truncated"] != 4 || errs[hostile] != 1 || len(errs) != 2 {
		t.Errorf("errors: got %v, want truncated=4 and the hostile label value intact", errs)
	}
	sp := map[string]float64{}
	for _, m := range fams["test_special"] {
		sp[m.labels["kind"]] = m.value
	}
	if !math.IsInf(sp["inf"], 1) || !math.IsInf(sp["minf"], -1) || !math.IsNaN(sp["nan"]) || sp["small"] != 1.5e-9 || sp["big"] != 1<<53 {
		t.Errorf("special values: got %v", sp)
	}
	if !strings.Contains(text, "# TYPE test_empty_total counter\n") {
		t.Errorf("empty family: want its HELP and TYPE lines in\n%s", text)
	}

	// Output is deterministic: samples sorted by label values.
	var again bytes.Buffer
	if err := r.WriteText(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != text {
		t.Errorf("second scrape differs:\n%s\nvs\n%s", again.String(), text)
	}
	if i, j := strings.Index(text, `proto="tcp"`), strings.Index(text, `proto="udp"`); i < 0 || j < i {
		t.Errorf("samples not sorted by label value:\n%s", text)
	}
}

func TestRegistry_Panics(t *testing.T) {
	cases := []struct {
		name string
		f    func(r *Registry)
	}{
		{"bad metric name", func(r *Registry) { r.NewGauge("1abc", "") }},
		{"bad metric name dash", func(r *Registry) { r.NewGauge("a-b", "") }},
		{"reserved label", func(r *Registry) { r.NewGauge("a", "", "__x") }},
		{"bad label", func(r *Registry) { r.NewGauge("a", "", "a:b") }},
		{"repeated label", func(r *Registry) { r.NewGauge("a", "", "x", "x") }},
		{"duplicate name", func(r *Registry) { r.NewGauge("a", ""); r.NewCounter("a", "") }},
		{"label count", func(r *Registry) { r.NewGauge("a", "", "x").Set(1) }},
		{"bad type", func(r *Registry) { r.Collect("a", "", "summary", nil, func(func(float64, ...string)) {}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("got no panic, want one")
				}
			}()
			tc.f(NewRegistry())
		})
	}
}

// TestRegistry_Concurrent updates and scrapes at once (run with -race).
func TestRegistry_Concurrent(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("c_total", "c", "k")
	const workers, n = 4, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				c.Inc(string(rune('a' + w)))
			}
		}()
	}
	for range 20 {
		var buf bytes.Buffer
		if err := r.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		parse(t, buf.String())
	}
	wg.Wait()
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, m := range parse(t, buf.String())["c_total"] {
		total += m.value
	}
	if total != workers*n {
		t.Errorf("got %v, want %v", total, workers*n)
	}
}
