package appliance_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/events"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

const (
	// loadClients is how many API clients the load test holds at once,
	// loadSubscribers of them following the event stream and the rest
	// reading the API in a loop.
	loadClients     = 200
	loadSubscribers = 5
	// loadSessions is how many logged-in sessions some of the clients
	// share; the others send an API token.
	loadSessions = 4
	// loadMaxConns bounds the connections of all clients together.
	loadMaxConns = 256
	// loadRequestTimeout fails a request that takes this long.
	loadRequestTimeout = time.Minute
	loadJob            = "load"
)

// loadDuration is how long the load lasts: 30 s, or BULWARK_LOAD_SECONDS
// for a quicker run while working on the test.
func loadDuration(t *testing.T) time.Duration {
	s := os.Getenv("BULWARK_LOAD_SECONDS")
	if s == "" {
		return 30 * time.Second
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		t.Fatalf("BULWARK_LOAD_SECONDS=%q: want a positive number of seconds", s)
	}
	return time.Duration(n * float64(time.Second))
}

// TestAPILoad holds 200 concurrent API clients on loopback for 30 s while
// the job "load" backs up the lab's VMs again and again, so that a backup
// is always running: 195 clients read the API in a loop over the calls a
// console makes, 5 follow the event stream. Every request must succeed;
// the latencies are reported, not asserted, as timings on a shared 2-CPU
// machine swing too much to be a test.
//
//	go test -run TestAPILoad -v ./appliance/
func TestAPILoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: 30 s")
	}
	dur := loadDuration(t)
	// Registered before the rig, so that it runs after the rig and the lab
	// have stopped.
	loadCheckGoroutines(t)

	r := newApplianceRig(t, &lab.Options{VMs: 6, Disks: 1, DiskSize: 256 << 20})
	ctx := context.Background()
	pin := sha256.Sum256(r.ap.Certificate().Certificate[0])
	tr := loadTransport(pin)
	defer tr.CloseIdleConnections()

	// Set up as an admin would: the job, an operator, sessions, a token.
	admin := r.admin()
	job := jobs.Job{Name: loadJob, Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily",
		Retention: retention.Policy{Last: 3}}
	if err := admin.Do(ctx, http.MethodPost, api.Prefix+"/jobs", job, nil); err != nil {
		t.Fatal(err)
	}
	const opPassword = "operator password for the load test"
	if err := admin.Do(ctx, http.MethodPost, api.Prefix+"/users",
		api.NewUser{Name: "ops", Password: opPassword, Role: auth.RoleOperator}, nil); err != nil {
		t.Fatal(err)
	}
	var tok api.CreatedToken
	if err := admin.Do(ctx, http.MethodPost, api.Prefix+"/tokens",
		api.NewToken{Name: "load test", Role: auth.RoleOperator}, &tok); err != nil {
		t.Fatal(err)
	}
	tokenClient := api.NewClientVia(r.ap.URL(), tr)
	tokenClient = tokenClient.WithToken(tok.Secret)
	var sessions []*api.Client
	for range loadSessions {
		c := api.NewClientVia(r.ap.URL(), tr)
		if _, err := c.Login(ctx, "ops", opPassword); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, c)
	}
	// client returns the ith client's own api.Client: every 8th logs in
	// with a session, the others with the token; all share tr.
	client := func(i int) *api.Client {
		if i%8 == 0 {
			c := *sessions[i/8%len(sessions)]
			return &c
		}
		return tokenClient.WithToken(tok.Secret)
	}

	// The backups: one run after the other until the load ends.
	ld := &loadRun{errs: &loadErrors{}}
	firstRun := make(chan struct{})
	loadOver := make(chan struct{})
	var runs []jobs.Run
	var driverErr error
	driverDone := make(chan struct{})
	go func() {
		defer close(driverDone)
		runs, driverErr = loadDriveBackups(ctx, client(1), r.lab, ld, firstRun, loadOver)
	}()
	select {
	case <-firstRun:
	case <-driverDone:
		t.Fatalf("the first backup did not start: %v", driverErr)
	}

	// The load.
	start := time.Now()
	end := start.Add(dur)
	streamCtx, stopStreams := context.WithDeadline(ctx, end)
	defer stopStreams()
	var wg sync.WaitGroup
	samples := make([][]loadSample, loadClients)
	subs := make([]map[string]int, loadSubscribers)
	for i := range loadClients {
		c := client(i)
		wg.Go(func() {
			if i < loadSubscribers {
				subs[i], samples[i] = loadSubscribe(streamCtx, c, i, ld)
				return
			}
			samples[i] = loadReadLoop(ctx, c, i, end, ld)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(loadOver)
	select {
	case <-driverDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("the last backup run did not end within 3 minutes of the load")
	}
	if driverErr != nil {
		t.Errorf("backups: %v", driverErr)
	}

	loadReport(t, samples, elapsed, subs, runs, start, start.Add(elapsed), ld)
	tr.CloseIdleConnections()
	r.stop()
}

// A loadRun is what the clients share: the newest run, whose ID they read,
// and the errors.
type loadRun struct {
	runID atomic.Pointer[string]
	errs  *loadErrors
}

// An loadErrors counts errors and keeps the first few.
type loadErrors struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *loadErrors) add(format string, a ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 10 {
		e.first = append(e.first, fmt.Sprintf(format, a...))
	}
}

// A loadSample is one request: which endpoint, and how long it took.
type loadSample struct {
	endpoint int
	took     time.Duration
}

// loadEndpoints are the calls a console makes, in the proportions it
// makes them; weight 0 ones are not picked but have samples of their own.
var loadEndpoints = []struct {
	name   string
	weight int
	path   func(*loadRun) string
}{
	{"GET /api/v1/jobs", 3, loadPath(api.Prefix + "/jobs")},
	{"GET /api/v1/points?limit=50", 2, loadPath(api.Prefix + "/points?limit=50")},
	{"GET /api/v1/vms", 2, loadPath(api.Prefix + "/vms")},
	{"GET /api/v1/tasks", 2, loadPath(api.Prefix + "/tasks")},
	{"GET /api/v1/runs/{id}", 2, func(l *loadRun) string { return api.Prefix + "/runs/" + *l.runID.Load() }},
	{"GET /api/v1/jobs/{name}/runs", 2, loadPath(api.Prefix + "/jobs/" + loadJob + "/runs")},
	{"GET /api/v1/store/stats", 1, loadPath(api.Prefix + "/store/stats")},
	{"GET /api/v1/vcenters", 1, loadPath(api.Prefix + "/vcenters")},
	{"GET /healthz", 2, loadPath("/healthz")},
	{"GET /api/v1/session", 2, loadPath(api.Prefix + "/session")},
	{"GET /api/v1/events (until open)", 0, nil},
}

const loadEventsEndpoint = 10 // in loadEndpoints

func loadPath(p string) func(*loadRun) string { return func(*loadRun) string { return p } }

// loadReadLoop makes requests one after the other until end, and returns how
// long each took.
func loadReadLoop(ctx context.Context, c *api.Client, i int, end time.Time, ld *loadRun) []loadSample {
	var picks []int
	for ep, e := range loadEndpoints {
		for range e.weight {
			picks = append(picks, ep)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	var samples []loadSample
	for time.Now().Before(end) {
		ep := picks[rng.IntN(len(picks))]
		path := loadEndpoints[ep].path(ld)
		reqCtx, cancel := context.WithTimeout(ctx, loadRequestTimeout)
		var out json.RawMessage // checked to be JSON, not decoded
		t0 := time.Now()
		err := c.Do(reqCtx, http.MethodGet, path, nil, &out)
		took := time.Since(t0)
		cancel()
		samples = append(samples, loadSample{ep, took})
		if err != nil {
			ld.errs.add("client %d: %v (after %v)", i, err, took.Round(time.Millisecond))
		}
	}
	return samples
}

// loadSubscribe follows the event stream until ctx ends, and counts the events
// by type. The stream must stay open until then.
func loadSubscribe(ctx context.Context, c *api.Client, i int, ld *loadRun) (map[string]int, []loadSample) {
	counts := map[string]int{}
	t0 := time.Now()
	resp, err := c.Stream(ctx, api.Prefix+"/events", nil)
	samples := []loadSample{{loadEventsEndpoint, time.Since(t0)}}
	if err != nil {
		ld.errs.add("subscriber %d: %v", i, err)
		return counts, samples
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		typ, ok := strings.CutPrefix(sc.Text(), "event: ")
		if !ok {
			continue
		}
		counts[typ]++
		if typ == events.TypeLagged {
			ld.errs.add("subscriber %d: lagged: the appliance cut the stream off", i)
		}
	}
	if ctx.Err() == nil {
		ld.errs.add("subscriber %d: the stream ended before the load did: %v", i, sc.Err())
	}
	return counts, samples
}

// loadDriveBackups runs the job again and again, as an operator with c would:
// it starts a run, waits for it to end, makes the guests write, and starts
// the next, until over is closed; it closes first once the first run has
// started. It returns the runs.
func loadDriveBackups(ctx context.Context, c *api.Client, l *lab.Lab, ld *loadRun, first chan<- struct{}, over <-chan struct{}) ([]jobs.Run, error) {
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var runs []jobs.Run
	for {
		if len(runs) > 0 {
			select {
			case <-over:
				return runs, nil
			default:
			}
			// About 1% of every disk changes between runs, so that each
			// incremental has data to read, chunk and store.
			for _, vm := range l.VMs() {
				for _, d := range vm.Disks {
					for n := int64(0); n < d.Capacity/100; {
						size := 4<<10 + rng.IntN(252<<10)
						off := rng.Int64N(d.Capacity-int64(size)) &^ 511
						if err := l.Write(vm.Name, d.Index, off, buf[:size]); err != nil {
							return runs, err
						}
						n += int64(size)
					}
				}
			}
		}
		var started api.RunStarted
		for attempt := 0; ; attempt++ {
			err := c.Do(ctx, http.MethodPost, api.Prefix+"/jobs/"+loadJob+"/run", nil, &started)
			var se *api.StatusError
			// The run's end is recorded an instant before the runner lets
			// the job go: a conflict right after it is expected.
			if errors.As(err, &se) && se.Status == http.StatusConflict && attempt < 100 {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err != nil {
				return runs, err
			}
			break
		}
		ld.runID.Store(&started.RunID)
		if len(runs) == 0 {
			close(first)
		}
		run, err := loadWaitRun(ctx, c, started.RunID)
		if err != nil {
			return runs, err
		}
		runs = append(runs, run)
	}
}

// loadWaitRun polls run id until it has ended.
func loadWaitRun(ctx context.Context, c *api.Client, id string) (jobs.Run, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var run jobs.Run
		if err := c.Do(ctx, http.MethodGet, api.Prefix+"/runs/"+id, nil, &run); err != nil {
			return run, err
		}
		if run.Result != jobs.ResultRunning {
			return run, nil
		}
		if time.Now().After(deadline) {
			return run, fmt.Errorf("run %s still running after 5 minutes", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loadReport logs what the load did, its totals last, and fails the test
// on its errors.
func loadReport(t *testing.T, samples [][]loadSample, elapsed time.Duration, subs []map[string]int,
	runs []jobs.Run, start, end time.Time, ld *loadRun) {
	t.Helper()
	// The runs; those that ended during the load, and how much of the load
	// had a run under way.
	completed, succeeded := 0, 0
	var busy time.Duration
	var b strings.Builder
	for i, run := range runs {
		from, to := loadLater(run.Started, start), loadEarlier(run.Ended, end)
		if to.After(from) {
			busy += to.Sub(from)
		}
		if !run.Ended.After(end) && !run.Ended.Before(start) {
			completed++
			if run.Result == jobs.ResultSuccess {
				succeeded++
			}
		}
		var read int64
		for _, v := range run.VMs {
			read += v.BytesRead
		}
		if i%4 == 0 {
			b.WriteString("\n   ")
		}
		fmt.Fprintf(&b, " run %s %s (%d VMs, %d MiB, %v);", run.ID, run.Result, len(run.VMs), read>>20,
			run.Ended.Sub(run.Started).Round(10*time.Millisecond))
		if run.Error != "" {
			fmt.Fprintf(&b, " %s;", run.Error)
		}
	}
	t.Logf("backup runs:%s", b.String())

	for i, counts := range subs {
		total := 0
		for _, n := range counts {
			total += n
		}
		t.Logf("subscriber %d: %d events %v", i, total, counts)
		if counts[api.EventJobRun] == 0 {
			t.Errorf("subscriber %d received no %s event", i, api.EventJobRun)
		}
	}

	var all []time.Duration
	byEndpoint := make([][]time.Duration, len(loadEndpoints))
	for _, s := range samples {
		for _, x := range s {
			all = append(all, x.took)
			byEndpoint[x.endpoint] = append(byEndpoint[x.endpoint], x.took)
		}
	}
	slices.Sort(all)
	b.Reset()
	fmt.Fprintf(&b, "per endpoint:\n    %-34s %7s %10s %10s %10s", "", "count", "p50", "p99", "max")
	for ep, d := range byEndpoint {
		slices.Sort(d)
		fmt.Fprintf(&b, "\n    %-34s %7d %10v %10v %10v", loadEndpoints[ep].name, len(d), loadPct(d, 50), loadPct(d, 99), loadPct(d, 100))
	}
	t.Log(b.String())
	t.Logf("%d clients (%d on the event stream), %.1f s: %d requests, %.0f requests/s, %d failed",
		loadClients, loadSubscribers, elapsed.Seconds(), len(all), float64(len(all))/elapsed.Seconds(), ld.errs.n)
	t.Logf("latency: p50 %v, p90 %v, p99 %v, max %v",
		loadPct(all, 50), loadPct(all, 90), loadPct(all, 99), loadPct(all, 100))
	t.Logf("backups: %d runs completed during the load, %d of them successfully; a run was under way %.0f%% of the load",
		completed, succeeded, 100*busy.Seconds()/elapsed.Seconds())

	if succeeded == 0 {
		t.Error("no backup run completed successfully during the load")
	}
	if ld.errs.n > 0 {
		t.Errorf("%d of %d requests failed; the first:\n\t%s", ld.errs.n, len(all), strings.Join(ld.errs.first, "\n\t"))
	}
}

// loadPct returns the pth percentile of sorted d, by the nearest rank.
func loadPct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (p*len(d) + 99) / 100
	return d[max(i, 1)-1].Round(10 * time.Microsecond)
}

func loadLater(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func loadEarlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// loadTransport is the one transport of all the clients: bounded to
// loadMaxConns connections, each kept open between requests, on loopback
// only, accepting only the appliance's certificate.
func loadTransport(pin [32]byte) *http.Transport {
	tr := api.PinnedTransport(pin)
	tr.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	tr.MaxConnsPerHost = loadMaxConns
	tr.MaxIdleConns = loadMaxConns
	tr.MaxIdleConnsPerHost = loadMaxConns
	tr.IdleConnTimeout = time.Minute
	tr.TLSHandshakeTimeout = 30 * time.Second
	return tr
}

// loadCheckGoroutines checks, once the test and its cleanups have ended, that
// the goroutines it started have all ended.
func loadCheckGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		n := runtime.NumGoroutine()
		for n > before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			n = runtime.NumGoroutine()
		}
		if n <= before {
			t.Logf("goroutines: %d before the test, %d after", before, n)
			return
		}
		var b bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("goroutines: %d before the test, %d ten seconds after it; the goroutines now:\n%s", before, n, b.String())
	})
}
