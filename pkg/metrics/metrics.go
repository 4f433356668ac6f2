// Package metrics is a tiny registry of counters and gauges written in the
// Prometheus text exposition format (version 0.0.4):
// https://prometheus.io/docs/instrumenting/exposition_formats/
//
// It has no global state: the process builds one Registry and passes it
// down. Values are either kept here (Counter, Gauge: set as events happen)
// or read at scrape time (Collect: a function that emits the current
// samples, for values owned by another component). It imports only the
// standard library and no other package of the project.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is the TYPE of a metric family.
type Type string

// The metric types this package writes.
const (
	CounterType Type = "counter"
	GaugeType   Type = "gauge"
)

// Registry holds metric families and writes them in the order they were
// registered. It is safe for concurrent use. The zero value is not usable;
// call NewRegistry.
type Registry struct {
	mu       sync.Mutex
	families []*family
	names    map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{names: make(map[string]bool)}
}

// family is one metric name with its HELP, TYPE and samples.
type family struct {
	name   string
	help   string
	typ    Type
	labels []string

	// Exactly one of values (kept here) and collect (read at scrape time)
	// is set.
	values  *valueSet
	collect func(emit func(v float64, labelValues ...string))
}

// valueSet holds the samples of a Counter or Gauge, by label values.
type valueSet struct {
	mu     sync.Mutex
	nlabel int
	byKey  map[string]*sample
}

type sample struct {
	labelValues []string
	v           float64
}

// register adds f, panicking on an invalid or duplicate name: both are
// programmer errors, found by the first test that builds the registry.
func (r *Registry) register(f *family) {
	if !validMetricName(f.name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", f.name))
	}
	seen := make(map[string]bool, len(f.labels))
	for _, l := range f.labels {
		if !validLabelName(l) || seen[l] {
			panic(fmt.Sprintf("metrics: %s: invalid or repeated label name %q", f.name, l))
		}
		seen[l] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[f.name] {
		panic(fmt.Sprintf("metrics: %s registered twice", f.name))
	}
	r.names[f.name] = true
	r.families = append(r.families, f)
}

// Counter is a monotonically increasing value, optionally split by labels.
type Counter struct{ vs *valueSet }

// Gauge is a value that goes up and down, optionally split by labels.
type Gauge struct{ vs *valueSet }

// NewCounter registers a counter family. By convention its name ends in
// _total. It panics if name or a label name is invalid or name is taken.
func (r *Registry) NewCounter(name, help string, labelNames ...string) *Counter {
	vs := &valueSet{nlabel: len(labelNames), byKey: make(map[string]*sample)}
	r.register(&family{name: name, help: help, typ: CounterType, labels: labelNames, values: vs})
	return &Counter{vs: vs}
}

// NewGauge registers a gauge family. It panics if name or a label name is
// invalid or name is taken.
func (r *Registry) NewGauge(name, help string, labelNames ...string) *Gauge {
	vs := &valueSet{nlabel: len(labelNames), byKey: make(map[string]*sample)}
	r.register(&family{name: name, help: help, typ: GaugeType, labels: labelNames, values: vs})
	return &Gauge{vs: vs}
}

// Collect registers a family whose samples are read at scrape time: collect
// is called once per scrape and calls emit once per sample, with one label
// value per label name (emit panics otherwise). Samples are written sorted
// by label values; a label combination emitted twice is written once, with
// the last value. collect must not call back into the registry.
func (r *Registry) Collect(name, help string, typ Type, labelNames []string, collect func(emit func(v float64, labelValues ...string))) {
	if typ != CounterType && typ != GaugeType {
		panic(fmt.Sprintf("metrics: %s: unknown type %q", name, typ))
	}
	r.register(&family{name: name, help: help, typ: typ, labels: slices.Clone(labelNames), collect: collect})
}

// Inc adds 1 to the sample with the given label values.
func (c *Counter) Inc(labelValues ...string) { c.vs.add(1, labelValues) }

// Add adds v (which must not be negative) to the sample with the given
// label values. A negative v is ignored: a counter never goes down.
func (c *Counter) Add(v float64, labelValues ...string) {
	if v < 0 || math.IsNaN(v) {
		return
	}
	c.vs.add(v, labelValues)
}

// Set sets the sample with the given label values to v.
func (g *Gauge) Set(v float64, labelValues ...string) { g.vs.set(v, labelValues) }

// Add adds v (possibly negative) to the sample with the given label values.
func (g *Gauge) Add(v float64, labelValues ...string) { g.vs.add(v, labelValues) }

func (vs *valueSet) get(labelValues []string) *sample {
	if len(labelValues) != vs.nlabel {
		panic(fmt.Sprintf("metrics: %d label values for %d labels", len(labelValues), vs.nlabel))
	}
	key := strings.Join(labelValues, "\xff")
	s := vs.byKey[key]
	if s == nil {
		s = &sample{labelValues: slices.Clone(labelValues)}
		vs.byKey[key] = s
	}
	return s
}

func (vs *valueSet) add(v float64, labelValues []string) {
	vs.mu.Lock()
	vs.get(labelValues).v += v
	vs.mu.Unlock()
}

func (vs *valueSet) set(v float64, labelValues []string) {
	vs.mu.Lock()
	vs.get(labelValues).v = v
	vs.mu.Unlock()
}

// snapshot returns the samples sorted by label values.
func (vs *valueSet) snapshot() []sample {
	vs.mu.Lock()
	out := make([]sample, 0, len(vs.byKey))
	for _, s := range vs.byKey {
		out = append(out, *s)
	}
	vs.mu.Unlock()
	sortSamples(out)
	return out
}

func sortSamples(s []sample) {
	slices.SortFunc(s, func(a, b sample) int { return slices.Compare(a.labelValues, b.labelValues) })
}

// gather returns f's samples, sorted by label values.
func (f *family) gather() []sample {
	if f.values != nil {
		return f.values.snapshot()
	}
	byKey := make(map[string]int)
	var out []sample
	f.collect(func(v float64, labelValues ...string) {
		if len(labelValues) != len(f.labels) {
			panic(fmt.Sprintf("metrics: %s: %d label values for %d labels", f.name, len(labelValues), len(f.labels)))
		}
		key := strings.Join(labelValues, "\xff")
		if i, ok := byKey[key]; ok {
			out[i].v = v
			return
		}
		byKey[key] = len(out)
		out = append(out, sample{labelValues: slices.Clone(labelValues), v: v})
	})
	sortSamples(out)
	return out
}

// WriteText writes every family in the text exposition format: a HELP and
// a TYPE line, then one line per sample. Families without samples (a
// labelled counter nothing has incremented yet) get their HELP and TYPE
// lines only, which the format allows.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := slices.Clone(r.families)
	r.mu.Unlock()

	bw := bufio.NewWriter(w)
	var line []byte
	for _, f := range fams {
		line = append(line[:0], "# HELP "...)
		line = append(line, f.name...)
		line = append(line, ' ')
		line = appendEscaped(line, f.help, false)
		line = append(line, "\n# TYPE "...)
		line = append(line, f.name...)
		line = append(line, ' ')
		line = append(line, f.typ...)
		line = append(line, '\n')
		for _, s := range f.gather() {
			line = append(line, f.name...)
			if len(f.labels) > 0 {
				line = append(line, '{')
				for i, l := range f.labels {
					if i > 0 {
						line = append(line, ',')
					}
					line = append(line, l...)
					line = append(line, '=', '"')
					line = appendEscaped(line, s.labelValues[i], true)
					line = append(line, '"')
				}
				line = append(line, '}')
			}
			line = append(line, ' ')
			line = appendValue(line, s.v)
			line = append(line, '\n')
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// appendEscaped escapes a HELP text (backslash and newline) or a label
// value (also the double quote), as the format requires.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '"' && quote:
			b = append(b, '\\', '"')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendValue writes v as Go's ParseFloat reads it, with the format's
// spellings of the special values.
func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || isLetter(c) || (i > 0 && isDigit(c))) {
			return false
		}
	}
	return true
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and does
// not start with the reserved "__".
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || isLetter(c) || (i > 0 && isDigit(c))) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
