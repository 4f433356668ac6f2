package api

import (
	"context"
	"math"
	"net/http"
	"time"
)

// Limits and defaults of GET /api/series.
const (
	// DefaultSeriesRange is the range without since: the hour ending at
	// until (default now).
	DefaultSeriesRange = time.Hour
	// MaxSeriesBuckets bounds the buckets of a series.
	MaxSeriesBuckets = 1440
	// defaultSeriesBuckets is the most buckets the default step gives.
	defaultSeriesBuckets = 120
	// maxSeriesStep bounds step (seconds): a year.
	maxSeriesStep = 365 * 86400
)

// niceSteps are the default steps in seconds, smallest first: the first
// that gives at most defaultSeriesBuckets buckets is taken.
var niceSteps = []int64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400}

// SeriesResponse is GET /api/series: bucket i covers [Since + i·StepSeconds,
// Since + (i+1)·StepSeconds), and Until is the end of the last bucket.
type SeriesResponse struct {
	Since       time.Time    `json:"since"`
	Until       time.Time    `json:"until"`
	StepSeconds int64        `json:"step_seconds"`
	Buckets     int          `json:"buckets"`
	By          string       `json:"by"`
	Metric      string       `json:"metric"`
	Source      string       `json:"source"`
	Exact       bool         `json:"exact"`
	Series      []SeriesData `json:"series"`
}

var seriesParams = withFilterParams("step", "by", "metric")

func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery, seriesParams)
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	var window time.Duration
	if s.Store != nil {
		window = s.Store.AggregationWindow()
	}
	q, err := p.parseSeries(s.Now(), int64(window/time.Second))
	if err != nil {
		s.writeBadRequest(w, err)
		return
	}
	if s.noStore(w) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.QueryTimeout)
	defer cancel()
	res, err := s.Store.Series(ctx, q)
	if err != nil {
		s.writeStoreError(w, r, "read series", err)
		return
	}
	resp := SeriesResponse{
		Since:       q.Since,
		Until:       q.Since.Add(time.Duration(q.Buckets) * q.Step),
		StepSeconds: int64(q.Step / time.Second),
		Buckets:     q.Buckets,
		By:          q.By,
		Metric:      q.Metric,
		Source:      res.Source,
		Exact:       res.Exact,
		Series:      res.Series,
	}
	if resp.Series == nil {
		resp.Series = []SeriesData{}
	}
	writeJSON(w, http.StatusOK, resp)
}

// parseSeries reads the parameters of /api/series at time now, for a store
// whose windows are window seconds wide (0: off).
func (p params) parseSeries(now time.Time, window int64) (SeriesQuery, error) {
	var q SeriesQuery
	var f FlowQuery
	if err := p.parseFilters(&f); err != nil {
		return q, err
	}
	since, until := f.Since, f.Until
	f.Since, f.Until = time.Time{}, time.Time{}
	q.Filter = f
	if until.IsZero() {
		until = now.UTC()
	}
	if since.IsZero() {
		since = until.Add(-DefaultSeriesRange)
		if since.Before(time.Unix(0, 0)) {
			since = time.Unix(0, 0).UTC()
		}
	}
	if !since.Before(until) {
		return q, badParam("since", "must be earlier than until (default now)")
	}

	q.By, _ = p.get("by")
	switch q.By {
	case "":
		q.By = "proto"
	case "proto", "peer", "direction":
	default:
		return q, badParam("by", "%s is not proto, peer or direction", quote(q.By))
	}
	q.Metric, _ = p.get("metric")
	switch q.Metric {
	case "":
		q.Metric = "bytes"
	case "bytes", "packets":
	default:
		return q, badParam("metric", "%s is not bytes or packets", quote(q.Metric))
	}

	lo, hi := since.UnixNano(), until.UnixNano()
	step, err := p.intParam("step", 0, 1, maxSeriesStep)
	if err != nil {
		return q, err
	}
	var n int64
	if step > 0 {
		st := int64(step)
		if window > 0 {
			st = ceilDiv(st, window) * window // windows must not straddle buckets
		}
		if n = bucketCount(lo, hi, st); n > MaxSeriesBuckets {
			return q, badParam("step", "%d s makes %d buckets from since to until, more than %d (use a step of at least %d s)",
				st, n, MaxSeriesBuckets, ceilDiv(ceilDiv(hi-lo, int64(time.Second)), MaxSeriesBuckets-1))
		}
		step = int(st)
	} else {
		st := defaultStep(lo, hi, window)
		n, step = bucketCount(lo, hi, st), int(st)
	}
	stepNs := int64(step) * int64(time.Second)
	start := floorDiv(lo, stepNs) * stepNs
	if n > (math.MaxInt64-start)/stepNs {
		return q, badParam("until", "out of range with a step of %d s", step)
	}
	q.Since, q.Step, q.Buckets = time.Unix(0, start).UTC(), time.Duration(stepNs), int(n)
	return q, nil
}

// bucketCount is the number of step-second buckets, the first starting at
// lo rounded down to a multiple of step, that cover [lo, hi) (Unix ns).
func bucketCount(lo, hi, step int64) int64 {
	stepNs := step * int64(time.Second)
	start := floorDiv(lo, stepNs) * stepNs
	return max(ceilDiv(hi-start, stepNs), 1)
}

// defaultStep returns the first of niceSteps (those a multiple of window,
// when windows are on) that covers [lo, hi) in at most
// defaultSeriesBuckets buckets, or beyond them, the least multiple of a
// day (or of window, when it does not divide a day) that does.
func defaultStep(lo, hi, window int64) int64 {
	for _, st := range niceSteps {
		if window > 0 && st%window != 0 {
			continue
		}
		if bucketCount(lo, hi, st) <= defaultSeriesBuckets {
			return st
		}
	}
	unit := int64(86400)
	if window > 0 && unit%window != 0 {
		unit = window
	}
	// ⌈span/119⌉ leaves room for the bucket that rounding since down adds.
	span := ceilDiv(hi-lo, int64(time.Second))
	st := max(ceilDiv(span, (defaultSeriesBuckets-1)*unit), 1) * unit
	for bucketCount(lo, hi, st) > defaultSeriesBuckets {
		st += unit
	}
	return st
}

// ceilDiv is ⌈a/b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

// floorDiv is ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
