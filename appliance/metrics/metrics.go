// Package metrics exports the appliance's metrics in the Prometheus
// format: what its jobs and tasks have done, how its API is used, and
// what its store holds.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultCacheFor is how long store statistics are reused when Options
// give no CacheFor.
const DefaultCacheFor = time.Minute

// StoreStats are the statistics of the store.
type StoreStats struct {
	Points           int     // restore points
	LogicalBytes     int64   // the size of everything backed up, as the VMs see it
	DataBytes        int64   // the data read, zeros and unchanged blocks left out
	UniqueBytes      int64   // after deduplication
	StoredBytes      int64   // after compression
	DedupRatio       float64 // DataBytes / UniqueBytes
	CompressionRatio float64 // UniqueBytes / StoredBytes
	Packs            int64
}

// Options configure Metrics. Every field is optional.
type Options struct {
	// StoreStats computes the store's statistics, which are exported if it
	// is set. It walks the catalogue, so it is called only when a scrape
	// finds the last result, or failure, older than CacheFor
	// (DefaultCacheFor if <= 0).
	StoreStats func(ctx context.Context) (StoreStats, error)
	CacheFor   time.Duration
	// TasksRunning and JobsRunning, if set, are read at each scrape.
	TasksRunning func() int
	JobsRunning  func() int
	// Now is the clock, time.Now if nil.
	Now func() time.Time
}

// Metrics are the appliance's metrics. The fields are for the code that
// counts: m.JobRuns.WithLabelValues(job, result).Inc().
type Metrics struct {
	// JobRuns counts finished job runs by job and result.
	JobRuns *prometheus.CounterVec
	// VMBackups counts finished VM backups by result.
	VMBackups *prometheus.CounterVec
	// BackupBytes counts the bytes of backups by kind: "read" from the
	// disks, "new" to the store after deduplication, "stored" after
	// compression.
	BackupBytes *prometheus.CounterVec
	// TaskDuration observes how long finished tasks took, by kind and
	// final state; ObserveTask feeds it.
	TaskDuration *prometheus.HistogramVec
	// APIRequests observes how long API requests took, by route, method
	// and status code; Instrument feeds it.
	APIRequests *prometheus.HistogramVec
	// LoginFailures counts failed logins.
	LoginFailures prometheus.Counter

	registry *prometheus.Registry
}

// New returns the appliance's metrics, registered with a registry of
// their own, together with the Go runtime's and the process's.
func New(o Options) *Metrics {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheFor <= 0 {
		o.CacheFor = DefaultCacheFor
	}
	m := &Metrics{
		JobRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_job_runs_total",
			Help: "Job runs finished, by job and result.",
		}, []string{"job", "result"}),
		VMBackups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_vm_backups_total",
			Help: "VM backups finished, by result.",
		}, []string{"result"}),
		BackupBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_backup_bytes_total",
			Help: `Bytes backed up: "read" from the disks, "new" to the store after deduplication, "stored" after compression.`,
		}, []string{"kind"}),
		TaskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bulwark_task_duration_seconds",
			Help: "How long finished tasks took, by kind and final state.",
			// From a second to the six hours a full check of a large
			// store can take.
			Buckets: prometheus.ExponentialBucketsRange(1, 6*60*60, 12),
		}, []string{"kind", "state"}),
		APIRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bulwark_api_request_duration_seconds",
			Help:    "How long API requests took, by route pattern, method and status code.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 10, 9),
		}, []string{"route", "method", "code"}),
		LoginFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_login_failures_total",
			Help: "Failed logins.",
		}),
		registry: prometheus.NewRegistry(),
	}
	m.registry.MustRegister(
		m.JobRuns, m.VMBackups, m.BackupBytes, m.TaskDuration, m.APIRequests, m.LoginFailures,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if o.TasksRunning != nil {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bulwark_tasks_running",
			Help: "Tasks running.",
		}, func() float64 { return float64(o.TasksRunning()) }))
	}
	if o.JobsRunning != nil {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bulwark_jobs_running",
			Help: "Job runs in progress.",
		}, func() float64 { return float64(o.JobsRunning()) }))
	}
	if o.StoreStats != nil {
		m.registry.MustRegister(newStoreCollector(o.StoreStats, o.CacheFor, o.Now))
	}
	return m
}

// Handler serves the metrics to Prometheus.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		// A collector that fails should cost its own metrics, not all.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Instrument returns h recording the duration of its requests in
// APIRequests under route, which must be the route's pattern, such as
// "GET /api/tasks/{id}", and never the request's path: every distinct
// label value is a time series of its own.
//
// A streaming route's durations are those of its streams.
func (m *Metrics) Instrument(route string, h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerDuration(m.APIRequests.MustCurryWith(prometheus.Labels{"route": route}), h)
}

// ObserveTask records in TaskDuration that a task of kind took d and
// ended in state. Its signature keeps this package free of the tasks
// package's types; tasks.Options.OnFinish can call it.
func (m *Metrics) ObserveTask(kind, state string, d time.Duration) {
	m.TaskDuration.WithLabelValues(kind, state).Observe(d.Seconds())
}
