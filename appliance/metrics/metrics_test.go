package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type scrape map[string]*dto.MetricFamily

// scrapeMetrics fetches and parses what m's handler serves.
func scrapeMetrics(t *testing.T, m *Metrics) scrape {
	t.Helper()
	ts := httptest.NewServer(m.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// metric returns the series of family name with exactly the labels given
// as name, value pairs, or nil.
func (s scrape) metric(name string, labels ...string) *dto.Metric {
	fam := s[name]
	if fam == nil {
		return nil
	}
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel()) != len(labels)/2 {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			found := false
			for i := 0; i < len(labels); i += 2 {
				if labels[i] == l.GetName() && labels[i+1] == l.GetValue() {
					found = true
				}
			}
			match = match && found
		}
		if match {
			return m
		}
	}
	return nil
}

// value returns the value of a counter or gauge, failing if it is absent.
func (s scrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.metric(name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no %s%v", name, labels)
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("%s%v is neither counter nor gauge", name, labels)
	return 0
}

func TestCounters(t *testing.T) {
	m := New(Options{})
	m.JobRuns.WithLabelValues("nightly", "succeeded").Inc()
	m.JobRuns.WithLabelValues("nightly", "succeeded").Inc()
	m.JobRuns.WithLabelValues("nightly", "failed").Inc()
	m.VMBackups.WithLabelValues("succeeded").Add(3)
	m.BackupBytes.WithLabelValues("read").Add(1 << 30)
	m.BackupBytes.WithLabelValues("new").Add(1 << 20)
	m.LoginFailures.Inc()
	m.ObserveTask("gc", "succeeded", 90*time.Second)
	m.ObserveTask("gc", "succeeded", 30*time.Second)

	s := scrapeMetrics(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"bulwark_job_runs_total", []string{"job", "nightly", "result", "succeeded"}, 2},
		{"bulwark_job_runs_total", []string{"job", "nightly", "result", "failed"}, 1},
		{"bulwark_vm_backups_total", []string{"result", "succeeded"}, 3},
		{"bulwark_backup_bytes_total", []string{"kind", "read"}, 1 << 30},
		{"bulwark_backup_bytes_total", []string{"kind", "new"}, 1 << 20},
		{"bulwark_login_failures_total", nil, 1},
	} {
		if got := s.value(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := s.metric("bulwark_task_duration_seconds", "kind", "gc", "state", "succeeded").GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 120 {
		t.Fatalf("task duration histogram: count %d, sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	buckets := h.GetBucket() // the last is +Inf
	if first, last := buckets[0].GetUpperBound(), buckets[len(buckets)-2].GetUpperBound(); first != 1 || last < 6*3600-1 || last > 7*3600 {
		t.Fatalf("task duration buckets from %v to %v s", first, last)
	}
}

func TestInstrument(t *testing.T) {
	m := New(Options{})
	mux := http.NewServeMux()
	const route = "GET /api/tasks/{id}"
	mux.Handle(route, m.Instrument(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		// Streaming handlers need to flush through the instrumentation.
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		io.WriteString(w, "ok")
	})))
	ts := httptest.NewServer(mux)
	defer ts.Close()
	for _, path := range []string{"/api/tasks/t-1", "/api/tasks/t-2", "/api/tasks/missing"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	s := scrapeMetrics(t, m)
	ok := s.metric("bulwark_api_request_duration_seconds", "route", route, "method", "get", "code", "200")
	if got := ok.GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("%d requests recorded as 200, want 2", got)
	}
	notFound := s.metric("bulwark_api_request_duration_seconds", "route", route, "method", "get", "code", "404")
	if got := notFound.GetHistogram().GetSampleCount(); got != 1 {
		t.Errorf("%d requests recorded as 404, want 1", got)
	}
	for _, series := range s["bulwark_api_request_duration_seconds"].GetMetric() {
		for _, l := range series.GetLabel() {
			if strings.Contains(l.GetValue(), "t-1") {
				t.Errorf("a label holds the request's path: %v", series.GetLabel())
			}
		}
	}
}

func TestStoreStatsCached(t *testing.T) {
	clk := &clock{now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	calls := 0
	stats := StoreStats{Points: 7, LogicalBytes: 1000, DataBytes: 800, UniqueBytes: 400, StoredBytes: 200,
		DedupRatio: 2, CompressionRatio: 2, Packs: 3}
	m := New(Options{Now: clk.Now, StoreStats: func(ctx context.Context) (StoreStats, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		s := stats
		s.Points += calls - 1
		return s, nil
	}})
	callCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return calls
	}

	s := scrapeMetrics(t, m)
	for name, want := range map[string]float64{
		"bulwark_store_points":            7,
		"bulwark_store_logical_bytes":     1000,
		"bulwark_store_data_bytes":        800,
		"bulwark_store_unique_bytes":      400,
		"bulwark_store_stored_bytes":      200,
		"bulwark_store_packs":             3,
		"bulwark_store_dedup_ratio":       2,
		"bulwark_store_compression_ratio": 2,
		"bulwark_store_stats_up":          1,
	} {
		if got := s.value(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	clk.Advance(DefaultCacheFor - time.Second)
	if got := scrapeMetrics(t, m).value(t, "bulwark_store_points"); got != 7 || callCount() != 1 {
		t.Fatalf("within the cache period: points %v after %d calls", got, callCount())
	}
	clk.Advance(time.Second)
	if got := scrapeMetrics(t, m).value(t, "bulwark_store_points"); got != 8 || callCount() != 2 {
		t.Fatalf("after the cache period: points %v after %d calls", got, callCount())
	}
}

func TestStoreStatsFailure(t *testing.T) {
	clk := &clock{now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	fail := false
	calls := 0
	m := New(Options{Now: clk.Now, CacheFor: time.Second, StoreStats: func(ctx context.Context) (StoreStats, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if fail {
			return StoreStats{}, errors.New("catalogue unreadable")
		}
		return StoreStats{Points: calls, Packs: 9}, nil
	}})
	setFail := func(f bool) {
		mu.Lock()
		defer mu.Unlock()
		fail = f
	}

	if s := scrapeMetrics(t, m); s.value(t, "bulwark_store_points") != 1 || s.value(t, "bulwark_store_stats_up") != 1 {
		t.Fatal("first scrape wrong")
	}
	setFail(true)
	clk.Advance(time.Second)
	s := scrapeMetrics(t, m)
	if got := s.value(t, "bulwark_store_stats_up"); got != 0 {
		t.Fatalf("up = %v after a failure", got)
	}
	if got := s.value(t, "bulwark_store_points"); got != 1 {
		t.Fatalf("points = %v after a failure, want the last good 1", got)
	}
	if got := s.value(t, "bulwark_store_packs"); got != 9 {
		t.Fatalf("packs = %v after a failure, want the last good 9", got)
	}
	// A failure is cached as well.
	scrapeMetrics(t, m)
	mu.Lock()
	if calls != 2 {
		t.Fatalf("%d calls, want 2", calls)
	}
	mu.Unlock()

	setFail(false)
	clk.Advance(time.Second)
	if s := scrapeMetrics(t, m); s.value(t, "bulwark_store_points") != 3 || s.value(t, "bulwark_store_stats_up") != 1 {
		t.Fatal("no recovery after the failure")
	}
}

func TestStoreStatsNeverGood(t *testing.T) {
	m := New(Options{StoreStats: func(ctx context.Context) (StoreStats, error) {
		return StoreStats{}, errors.New("no store")
	}})
	s := scrapeMetrics(t, m)
	if got := s.value(t, "bulwark_store_stats_up"); got != 0 {
		t.Fatalf("up = %v", got)
	}
	if s["bulwark_store_points"] != nil {
		t.Fatal("points exported without ever a good computation")
	}
}

func TestRunningGaugesAndRuntime(t *testing.T) {
	var mu sync.Mutex
	tasks := 3
	m := New(Options{
		TasksRunning: func() int { mu.Lock(); defer mu.Unlock(); return tasks },
		JobsRunning:  func() int { return 1 },
	})
	s := scrapeMetrics(t, m)
	if got := s.value(t, "bulwark_tasks_running"); got != 3 {
		t.Errorf("tasks running = %v", got)
	}
	if got := s.value(t, "bulwark_jobs_running"); got != 1 {
		t.Errorf("jobs running = %v", got)
	}
	mu.Lock()
	tasks = 0
	mu.Unlock()
	if got := scrapeMetrics(t, m).value(t, "bulwark_tasks_running"); got != 0 {
		t.Errorf("tasks running = %v, read at scrape time", got)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total"} {
		if s[name] == nil {
			t.Errorf("no %s", name)
		}
	}
}

func TestOptionalMetricsAbsent(t *testing.T) {
	// Two sets of metrics in one process: each has its own registry.
	New(Options{})
	s := scrapeMetrics(t, New(Options{}))
	for _, name := range []string{"bulwark_store_stats_up", "bulwark_tasks_running", "bulwark_jobs_running"} {
		if s[name] != nil {
			t.Errorf("%s exported without its option", name)
		}
	}
}
