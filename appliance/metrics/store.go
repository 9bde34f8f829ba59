package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statsTimeout bounds one computation of the store's statistics. It is
// longer than a scrape usually waits: a computation that outlives its
// scrape still fills the cache for the next one.
const statsTimeout = 2 * time.Minute

// storeCollector exports the store's statistics, computing them at most
// once per cacheFor.
type storeCollector struct {
	stats    func(context.Context) (StoreStats, error)
	cacheFor time.Duration
	now      func() time.Time

	points, logical, data, unique, stored, packs, dedup, compression, up *prometheus.Desc

	// mu is held during a computation, so that concurrent scrapes wait
	// for it rather than start their own.
	mu      sync.Mutex
	checked time.Time // when stats was last called
	last    StoreStats
	good    bool // whether last holds a result
	ok      bool // whether the last call succeeded
}

func newStoreCollector(stats func(context.Context) (StoreStats, error), cacheFor time.Duration, now func() time.Time) *storeCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("bulwark_store_"+name, help, nil, nil)
	}
	return &storeCollector{
		stats:       stats,
		cacheFor:    cacheFor,
		now:         now,
		points:      desc("points", "Restore points in the store."),
		logical:     desc("logical_bytes", "Size of everything backed up, as the VMs see it."),
		data:        desc("data_bytes", "Bytes of data backed up, zeros and unchanged blocks left out."),
		unique:      desc("unique_bytes", "Bytes of data after deduplication."),
		stored:      desc("stored_bytes", "Bytes of data after deduplication and compression."),
		packs:       desc("packs", "Pack files in the store."),
		dedup:       desc("dedup_ratio", "Data bytes per unique byte."),
		compression: desc("compression_ratio", "Unique bytes per stored byte."),
		up:          desc("stats_up", "Whether the last computation of the store statistics succeeded; if not, the others are from the last that did."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.points, c.logical, c.data, c.unique, c.stored, c.packs, c.dedup, c.compression, c.up} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s, good, ok := c.read()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	if ok {
		gauge(c.up, 1)
	} else {
		gauge(c.up, 0)
	}
	if !good {
		return
	}
	gauge(c.points, float64(s.Points))
	gauge(c.logical, float64(s.LogicalBytes))
	gauge(c.data, float64(s.DataBytes))
	gauge(c.unique, float64(s.UniqueBytes))
	gauge(c.stored, float64(s.StoredBytes))
	gauge(c.packs, float64(s.Packs))
	gauge(c.dedup, s.DedupRatio)
	gauge(c.compression, s.CompressionRatio)
}

// read returns the statistics, computing them if the last computation is
// older than cacheFor. A failure is cached too, so that a store in trouble
// is not walked at every scrape.
func (c *storeCollector) read() (s StoreStats, good, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.checked.IsZero() || now.Sub(c.checked) >= c.cacheFor {
		// A scrape has no context of its own to pass on.
		ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
		s, err := c.stats(ctx)
		cancel()
		c.checked, c.ok = now, err == nil
		if err == nil {
			c.last, c.good = s, true
		}
	}
	return c.last, c.good, c.ok
}
