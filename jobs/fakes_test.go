package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs/jobstest"
)

// testTimeout bounds every wait of a test, so that a deadlock fails the
// test instead of hanging it. No assertion depends on it.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testVCenterName is the only vCenter of a rig's state.
const testVCenterName = "vc1"

type fakeInventory struct {
	vms []Target
	err error
}

func (f *fakeInventory) VMs(ctx context.Context, vcenter string) ([]Target, error) {
	if vcenter != testVCenterName {
		return nil, fmt.Errorf("asked for the VMs of vCenter %q, want %q", vcenter, testVCenterName)
	}
	return f.vms, f.err
}

// fakeBackuper backs up VMs instantly, or, while its gate is shut, once the
// gate opens. It records how many backups ran at once, overall and per
// datastore.
type fakeBackuper struct {
	started chan BackupRequest // a request as each backup starts
	gate    chan struct{}      // if not nil, backups wait for it to close
	fail    map[string]error   // by VM name
	results map[string]BackupResult

	mu          sync.Mutex
	running     int
	maxRunning  int
	perStore    map[string]int
	maxPerStore map[string]int
	calls       []string
	cancelled   []string // VMs whose backup saw its context end
}

func newFakeBackuper() *fakeBackuper {
	return &fakeBackuper{
		started:     make(chan BackupRequest, 1000),
		perStore:    make(map[string]int),
		maxPerStore: make(map[string]int),
	}
}

func (f *fakeBackuper) BackupVM(ctx context.Context, req BackupRequest) (BackupResult, error) {
	if req.VCenter != testVCenterName {
		return BackupResult{}, fmt.Errorf("asked to back up %s from vCenter %q, want %q", req.VM.Name, req.VCenter, testVCenterName)
	}
	f.mu.Lock()
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	for _, s := range req.VM.Datastores {
		f.perStore[s]++
		f.maxPerStore[s] = max(f.maxPerStore[s], f.perStore[s])
	}
	f.calls = append(f.calls, req.VM.Name)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.running--
		for _, s := range req.VM.Datastores {
			f.perStore[s]--
		}
	}()
	f.started <- req

	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			f.mu.Lock()
			f.cancelled = append(f.cancelled, req.VM.Name)
			f.mu.Unlock()
			return BackupResult{}, fmt.Errorf("snapshot of %s removed: %w", req.VM.Name, ctx.Err())
		}
	}
	if err := f.fail[req.VM.Name]; err != nil {
		return BackupResult{}, err
	}
	if res, ok := f.results[req.VM.Name]; ok {
		return res, nil
	}
	return BackupResult{Point: "point-" + req.VM.Name, Consistency: "quiesced", BytesRead: 100, BytesNew: 10, BytesStored: 5}, nil
}

func (f *fakeBackuper) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// waitStarted waits for n backups to start and returns their VM names.
func (f *fakeBackuper) waitStarted(t *testing.T, ctx context.Context, n int) []string {
	t.Helper()
	var names []string
	for range n {
		select {
		case req := <-f.started:
			names = append(names, req.VM.Name)
		case <-ctx.Done():
			t.Fatalf("only %d of %d backups started: %v", len(names), n, names)
		}
	}
	return names
}

type retainCall struct {
	job    string
	policy retention.Policy
}

type fakeRetainer struct {
	err   error
	mu    sync.Mutex
	calls []retainCall
}

func (f *fakeRetainer) Retain(ctx context.Context, job string, p retention.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, retainCall{job, p})
	return f.err
}

func (f *fakeRetainer) called() []retainCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]retainCall(nil), f.calls...)
}

// rig is a Runner with fakes around it.
type rig struct {
	inv    *fakeInventory
	bak    *fakeBackuper
	ret    *fakeRetainer
	state  *State
	clock  *jobstest.Clock
	runner *Runner
	events chan Event
}

var t0 = time.Date(2026, time.March, 2, 22, 0, 0, 0, time.UTC)

// newRig returns a rig over vms, with its clock at t0; cfg may set limits.
func newRig(t *testing.T, vms []Target, cfg RunnerConfig) *rig {
	t.Helper()
	return newRigAt(t, t0, vms, cfg)
}

func newRigAt(t *testing.T, now time.Time, vms []Target, cfg RunnerConfig) *rig {
	t.Helper()
	state, err := OpenState(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	if err := state.PutVCenter(testVCenter(testVCenterName)); err != nil {
		t.Fatal(err)
	}
	g := &rig{
		inv:    &fakeInventory{vms: vms},
		bak:    newFakeBackuper(),
		ret:    &fakeRetainer{},
		state:  state,
		clock:  jobstest.NewClock(now),
		events: make(chan Event, 10000),
	}
	cfg.Inventory, cfg.Backuper, cfg.Retainer, cfg.State, cfg.Clock = g.inv, g.bak, g.ret, state, g.clock
	cfg.Progress = func(e Event) { g.events <- e }
	if g.runner, err = NewRunner(cfg); err != nil {
		t.Fatal(err)
	}
	return g
}

// waitEvent waits for an event that match accepts.
func (g *rig) waitEvent(t *testing.T, ctx context.Context, what string, match func(Event) bool) Event {
	t.Helper()
	for {
		select {
		case e := <-g.events:
			if match(e) {
				return e
			}
		case <-ctx.Done():
			t.Fatalf("no event: %s", what)
		}
	}
}

// vmsOn returns n VMs named vm01, vm02, ..., each on its own datastore.
func vmsOn(n int) []Target {
	vms := make([]Target, n)
	for i := range vms {
		name := fmt.Sprintf("vm%02d", i+1)
		vms[i] = Target{MoRef: fmt.Sprintf("vm-%d", 100+i), Name: name, Folder: "/DC0/vm", Datastores: []string{"ds-" + name}}
	}
	return vms
}

func testJob(name string) Job {
	return Job{
		Name:      name,
		Selection: Selection{Folders: []string{"/DC0/vm"}},
		Schedule:  "0 22 * * *",
		Retention: retention.Policy{Last: 3},
		Enabled:   true,
	}
}

var errBoom = errors.New("boom")
