package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/appliance/events"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

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

func newManager(t *testing.T, o Options) *Manager {
	t.Helper()
	if o.Hub == nil {
		o.Hub = events.NewHub(0)
	}
	m, err := NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return m
}

func openDB(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(8 << 20).
		WithValueLogFileSize(16 << 20).WithNumMemtables(2).WithBlockCacheSize(1 << 20).WithIndexCacheSize(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// watch returns the tasks published on hub from now on.
func watch(t *testing.T, hub *events.Hub) <-chan Task {
	t.Helper()
	evs := hub.Subscribe(t.Context(), 0, func(ev events.Event) bool { return ev.Type == EventType })
	out := make(chan Task, 1024)
	go func() {
		defer close(out)
		for ev := range evs {
			var task Task
			if err := json.Unmarshal(ev.Data, &task); err != nil {
				panic(err)
			}
			out <- task
		}
	}()
	return out
}

// next waits for the next task event, failing if there will be none.
func next(t *testing.T, ch <-chan Task) Task {
	t.Helper()
	task, ok := <-ch
	if !ok {
		t.Fatal("no more task events")
	}
	return task
}

func wait(t *testing.T, m *Manager, id string) Task {
	t.Helper()
	task, err := m.Wait(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestLifecycle(t *testing.T) {
	hub := events.NewHub(0)
	clk := newClock()
	var finished []Task
	var mu sync.Mutex
	m := newManager(t, Options{Hub: hub, Now: clk.Now, OnFinish: func(task Task) {
		mu.Lock()
		defer mu.Unlock()
		finished = append(finished, task)
	}})
	evs := watch(t, hub)

	release := make(chan struct{})
	ok, err := m.Start(Spec{Kind: "check", Target: "store", User: "alice"}, func(ctx context.Context, p *Reporter) (any, error) {
		<-release
		clk.Advance(time.Minute)
		return map[string]int{"packs": 3}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok.State != StateRunning || ok.Kind != "check" || ok.Target != "store" || ok.User != "alice" ||
		!ok.Started.Equal(clk.Now()) || !ok.Ended.IsZero() {
		t.Fatalf("Start returned %+v", ok)
	}
	if got, err := m.Get(ok.ID); err != nil || got.State != StateRunning {
		t.Fatalf("Get while running = %+v, %v", got, err)
	}
	if n := m.Running(); n != 1 {
		t.Fatalf("Running() = %d", n)
	}
	close(release)
	got := wait(t, m, ok.ID)
	if got.State != StateSucceeded || got.Error != "" || string(got.Result) != `{"packs":3}` ||
		got.Ended.Sub(got.Started) != time.Minute {
		t.Fatalf("finished task = %+v (result %s)", got, got.Result)
	}
	if e := next(t, evs); e.ID != ok.ID || e.State != StateRunning {
		t.Fatalf("first event %+v", e)
	}
	if e := next(t, evs); e.ID != ok.ID || e.State != StateSucceeded || string(e.Result) != `{"packs":3}` {
		t.Fatalf("second event %+v", e)
	}

	failed, err := m.Start(Spec{Kind: "gc"}, func(ctx context.Context, p *Reporter) (any, error) {
		return nil, errors.New("pack 7 is missing")
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, m, failed.ID); got.State != StateFailed || got.Error != "pack 7 is missing" || got.Result != nil {
		t.Fatalf("failed task = %+v", got)
	}

	panicked, err := m.Start(Spec{Kind: "prune"}, func(ctx context.Context, p *Reporter) (any, error) {
		panic("bug")
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, m, panicked.ID); got.State != StateFailed || got.Error != "panic: bug" {
		t.Fatalf("panicked task = %+v", got)
	}
	if n := m.Running(); n != 0 {
		t.Fatalf("Running() = %d after all finished", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 3 || finished[0].State != StateSucceeded || finished[1].State != StateFailed {
		t.Fatalf("OnFinish saw %+v", finished)
	}
}

func TestTaskJSON(t *testing.T) {
	b, err := json.Marshal(Task{ID: "t-1", Kind: "gc", State: StateRunning, Started: time.Unix(0, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"t-1","kind":"gc","state":"running","progress":{"done":0,"total":0},"started":"1970-01-01T00:00:00Z"}`
	if string(b) != want {
		t.Fatalf("JSON = %s\nwant %s", b, want)
	}
}

func TestIDs(t *testing.T) {
	clk := newClock()
	m := newManager(t, Options{Now: clk.Now})
	var prev string
	seen := map[string]bool{}
	for range 50 {
		task, _, finish, err := m.Track(Spec{Kind: "x"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		finish(nil, nil, false)
		want := fmt.Sprintf("t-%012x-", clk.Now().UnixMilli())
		if len(task.ID) != len(want)+8 || task.ID[:len(want)] != want || seen[task.ID] {
			t.Fatalf("ID %q, want %s and 8 hex digits, unique", task.ID, want)
		}
		if task.ID < prev && task.ID[:len(want)] != prev[:len(want)] {
			t.Fatalf("ID %q sorts before %q", task.ID, prev)
		}
		seen[task.ID], prev = true, task.ID
		clk.Advance(time.Millisecond)
	}
}

func TestCancel(t *testing.T) {
	m := newManager(t, Options{})
	started := make(chan struct{})
	task, err := m.Start(Spec{Kind: "restore"}, func(ctx context.Context, p *Reporter) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, fmt.Errorf("read disk: %w", ctx.Err())
	})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := m.Cancel(task.ID); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, m, task.ID); got.State != StateCancelled || got.Error != ErrCancelled.Error() {
		t.Fatalf("cancelled task = %+v", got)
	}
	if err := m.Cancel(task.ID); !errors.Is(err, ErrFinished) {
		t.Fatalf("Cancel of a finished task: %v", err)
	}
	if err := m.Cancel("t-nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Cancel of an unknown task: %v", err)
	}
	if _, err := m.Get("t-nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an unknown task: %v", err)
	}
	if _, err := m.Wait(t.Context(), "t-nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Wait for an unknown task: %v", err)
	}

	// Work that completes despite the request to stop has succeeded.
	started = make(chan struct{})
	finish := make(chan struct{})
	task, err = m.Start(Spec{Kind: "gc"}, func(ctx context.Context, p *Reporter) (any, error) {
		close(started)
		<-finish
		return "done", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := m.Cancel(task.ID); err != nil {
		t.Fatal(err)
	}
	close(finish)
	if got := wait(t, m, task.ID); got.State != StateSucceeded || string(got.Result) != `"done"` {
		t.Fatalf("task finished despite Cancel = %+v", got)
	}
}

func TestWaitContext(t *testing.T) {
	m := newManager(t, Options{})
	task, _, finish, err := m.Track(Spec{Kind: "job-run"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer finish(nil, nil, false)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.Wait(ctx, task.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with an ended context: %v", err)
	}
}

func TestProgressThrottled(t *testing.T) {
	hub := events.NewHub(0)
	clk := newClock()
	m := newManager(t, Options{Hub: hub, Now: clk.Now})
	evs := watch(t, hub)

	task, p, finish, err := m.Track(Spec{Kind: "job-run", Target: "nightly"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Phase("read", 100) // published at once
	for range 10 {
		p.Add(1) // within 250 ms of the last event: not published
	}
	if got, _ := m.Get(task.ID); got.Progress != (Progress{Phase: "read", Done: 10, Total: 100}) {
		t.Fatalf("Get shows progress %+v", got.Progress)
	}
	clk.Advance(250 * time.Millisecond)
	p.Add(1) // published
	p.Set(50)
	clk.Advance(100 * time.Millisecond)
	p.Set(60)
	clk.Advance(150 * time.Millisecond)
	p.Set(70) // published
	p.Phase("write", 0)
	p.Add(5)
	finish(nil, nil, false)
	p.Add(1) // after the end: ignored

	want := []Task{
		{State: StateRunning},
		{State: StateRunning, Progress: Progress{Phase: "read", Total: 100}},
		{State: StateRunning, Progress: Progress{Phase: "read", Done: 11, Total: 100}},
		{State: StateRunning, Progress: Progress{Phase: "read", Done: 70, Total: 100}},
		{State: StateRunning, Progress: Progress{Phase: "write"}},
		{State: StateSucceeded, Progress: Progress{Phase: "write", Done: 5}},
	}
	for i, w := range want {
		got := next(t, evs)
		if got.ID != task.ID || got.State != w.State || got.Progress != w.Progress {
			t.Fatalf("event %d = %s %+v, want %s %+v", i, got.State, got.Progress, w.State, w.Progress)
		}
	}
	if got, _ := m.Get(task.ID); got.Progress.Done != 5 {
		t.Fatalf("progress after the end = %+v", got.Progress)
	}
	hub.Close()
	if got, ok := <-evs; ok {
		t.Fatalf("unexpected event %+v", got)
	}
}

func TestExclusive(t *testing.T) {
	m := newManager(t, Options{})
	release := make(chan struct{})
	first, err := m.Start(Spec{Kind: "gc", Exclusive: "store"}, func(ctx context.Context, p *Reporter) (any, error) {
		<-release
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Start(Spec{Kind: "check", Exclusive: "store"}, func(ctx context.Context, p *Reporter) (any, error) {
		t.Error("a second exclusive task ran")
		return nil, nil
	})
	var busy *BusyError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &busy) || busy.Running.ID != first.ID {
		t.Fatalf("second exclusive Start: %v", err)
	}
	_, _, _, err = m.Track(Spec{Kind: "prune", Exclusive: "store"}, nil)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive Track: %v", err)
	}
	other, err := m.Start(Spec{Kind: "check", Exclusive: "other-store"}, func(ctx context.Context, p *Reporter) (any, error) {
		return nil, nil
	})
	if err != nil {
		t.Fatalf("Start with another key: %v", err)
	}
	wait(t, m, other.ID)
	close(release)
	wait(t, m, first.ID)
	again, err := m.Start(Spec{Kind: "check", Exclusive: "store"}, func(ctx context.Context, p *Reporter) (any, error) {
		return nil, nil
	})
	if err != nil {
		t.Fatalf("Start once the key is free: %v", err)
	}
	wait(t, m, again.ID)
}

func TestTrack(t *testing.T) {
	m := newManager(t, Options{})
	var cancelled sync.WaitGroup
	cancelled.Add(1)
	task, p, finish, err := m.Track(Spec{Kind: "job-run", Target: "nightly", User: "scheduler"}, cancelled.Done)
	if err != nil {
		t.Fatal(err)
	}
	p.Phase("vm-1", 10)
	if err := m.Cancel(task.ID); err != nil {
		t.Fatal(err)
	}
	cancelled.Wait()
	if got, _ := m.Get(task.ID); got.State != StateRunning {
		t.Fatalf("tracked task is %s before its finish was called", got.State)
	}
	finish(map[string]int{"vms": 1}, context.Canceled, true)
	finish(nil, errors.New("second call"), false) // ignored
	got := wait(t, m, task.ID)
	if got.State != StateCancelled || got.Error != ErrCancelled.Error() || string(got.Result) != `{"vms":1}` {
		t.Fatalf("tracked task = %+v", got)
	}

	task, _, finish, err = m.Track(Spec{Kind: "job-run"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	finish(nil, errors.New("vCenter unreachable"), false)
	if got := wait(t, m, task.ID); got.State != StateFailed || got.Error != "vCenter unreachable" {
		t.Fatalf("failed tracked task = %+v", got)
	}
}

func TestShutdown(t *testing.T) {
	m := newManager(t, Options{})
	var ids []string
	for range 3 {
		task, err := m.Start(Spec{Kind: "restore"}, func(ctx context.Context, p *Reporter) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	var finish func(any, error, bool)
	tracked, _, finish, err := m.Track(Spec{Kind: "job-run"}, func() {
		go finish(nil, errors.New("stopped"), true)
	})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, tracked.ID)

	if err := m.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := m.Running(); n != 0 {
		t.Fatalf("%d tasks running after Shutdown", n)
	}
	for _, id := range ids {
		if got, _ := m.Get(id); got.State != StateCancelled || got.Error != ErrShuttingDown.Error() {
			t.Errorf("after Shutdown task = %+v", got)
		}
	}
	if _, err := m.Start(Spec{Kind: "gc"}, func(context.Context, *Reporter) (any, error) {
		t.Error("task ran after Shutdown")
		return nil, nil
	}); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Start after Shutdown: %v", err)
	}
	if _, _, _, err := m.Track(Spec{Kind: "job-run"}, nil); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Track after Shutdown: %v", err)
	}
}

func TestShutdownGivesUp(t *testing.T) {
	m := newManager(t, Options{})
	release := make(chan struct{})
	task, err := m.Start(Spec{Kind: "gc"}, func(ctx context.Context, p *Reporter) (any, error) {
		<-release // deaf to cancellation
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := m.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended context: %v", err)
	}
	close(release)
	if got := wait(t, m, task.ID); got.State != StateSucceeded {
		t.Fatalf("task = %+v", got)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	db := openDB(t, dir)
	m1, err := NewManager(Options{Hub: events.NewHub(0), DB: db, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	done, err := m1.Start(Spec{Kind: "check", Target: "store", User: "alice"}, func(ctx context.Context, p *Reporter) (any, error) {
		p.Phase("verify", 2)
		p.Add(2)
		return map[string]int{"errors": 0}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done = wait(t, m1, done.ID)
	clk.Advance(time.Second)
	// A task still running when the process dies, without Shutdown.
	left, _, _, err := m1.Track(Spec{Kind: "job-run", Target: "nightly"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Hour)
	db = openDB(t, dir)
	m2 := newManager(t, Options{Hub: events.NewHub(0), DB: db, Now: clk.Now})
	got, err := m2.Get(done.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateSucceeded || string(got.Result) != `{"errors":0}` || got.User != "alice" ||
		got.Progress.Done != 2 || !got.Ended.Equal(done.Ended) {
		t.Fatalf("reloaded task = %+v", got)
	}
	interrupted, err := m2.Get(left.ID)
	if err != nil {
		t.Fatal(err)
	}
	if interrupted.State != StateInterrupted || interrupted.Error != "interrupted: the appliance stopped" ||
		!interrupted.Ended.Equal(clk.Now()) {
		t.Fatalf("task left running = %+v", interrupted)
	}
	list, err := m2.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != left.ID || list[1].ID != done.ID {
		t.Fatalf("List = %+v", list)
	}
	if n := m2.Running(); n != 0 {
		t.Fatalf("Running() = %d", n)
	}
	if err := m2.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The interruption was written back, not only found again.
	clk.Advance(time.Hour)
	db = openDB(t, dir)
	defer db.Close()
	m3 := newManager(t, Options{Hub: events.NewHub(0), DB: db, Now: clk.Now})
	if got, _ := m3.Get(left.ID); got.State != StateInterrupted || !got.Ended.Equal(interrupted.Ended) {
		t.Fatalf("task left running, reloaded again = %+v", got)
	}
}

func TestKeepsAtMostMaxFinished(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	defer db.Close()
	clk := newClock()
	m := newManager(t, Options{DB: db, Now: clk.Now})
	long, _, finishLong, err := m.Track(Spec{Kind: "restore"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range maxFinished + 5 {
		clk.Advance(time.Millisecond)
		task, _, finish, err := m.Track(Spec{Kind: "check"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		finish(nil, nil, false)
		ids = append(ids, task.ID)
	}
	for _, id := range ids[:5] {
		if _, err := m.Get(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the oldest finished tasks are kept: Get(%s): %v", id, err)
		}
	}
	if got, err := m.Get(long.ID); err != nil || got.State != StateRunning {
		t.Fatalf("a long-running task was dropped: %+v, %v", got, err)
	}
	list, err := m.List(Filter{Kind: "check", Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != maxFinished || list[0].ID != ids[len(ids)-1] || list[len(list)-1].ID != ids[5] {
		t.Fatalf("List returned %d tasks, %s..%s", len(list), list[0].ID, list[len(list)-1].ID)
	}
	finishLong(nil, nil, false) // now the oldest finished: dropped at once
	if _, err := m.Get(long.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(%s): %v", long.ID, err)
	}

	keys := 0
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys != maxFinished {
		t.Fatalf("%d tasks in the database, want %d", keys, maxFinished)
	}
}

func TestList(t *testing.T) {
	clk := newClock()
	m := newManager(t, Options{Now: clk.Now})
	start := func(kind string, state State) string {
		clk.Advance(time.Second)
		task, _, finish, err := m.Track(Spec{Kind: kind}, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch state {
		case StateSucceeded:
			finish(nil, nil, false)
		case StateFailed:
			finish(nil, errors.New("no"), false)
		default:
			t.Cleanup(func() { finish(nil, nil, false) })
		}
		return task.ID
	}
	c1 := start("check", StateSucceeded)
	g1 := start("gc", StateFailed)
	c2 := start("check", StateRunning)
	p1 := start("prune", StateSucceeded)
	g2 := start("gc", StateSucceeded)

	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{}, []string{g2, p1, c2, g1, c1}},
		{Filter{Kind: "check"}, []string{c2, c1}},
		{Filter{State: StateSucceeded}, []string{g2, p1, c1}},
		{Filter{Kind: "gc", State: StateSucceeded}, []string{g2}},
		{Filter{State: StateRunning}, []string{c2}},
		{Filter{Limit: 2}, []string{g2, p1}},
		{Filter{Kind: "restore"}, nil},
	} {
		list, err := m.List(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, task := range list {
			got = append(got, task.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("List(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestSnapshotsShareNothing(t *testing.T) {
	m := newManager(t, Options{})
	task, err := m.Start(Spec{Kind: "x"}, func(context.Context, *Reporter) (any, error) { return []int{1}, nil })
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, m, task.ID)
	got.Result[1] = '9'
	if again, _ := m.Get(task.ID); string(again.Result) != "[1]" {
		t.Fatalf("Result changed to %s through a snapshot", again.Result)
	}
}

func TestNewManagerNeedsHub(t *testing.T) {
	if _, err := NewManager(Options{}); err == nil {
		t.Fatal("NewManager without a Hub succeeded")
	}
}

// TestConcurrent is for the race detector.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	defer db.Close()
	hub := events.NewHub(0)
	m := newManager(t, Options{Hub: hub, DB: db})
	evs := hub.Subscribe(t.Context(), 0, nil)
	go func() {
		for range evs {
		}
	}()
	var wg sync.WaitGroup
	const workers, each = 8, 20
	states := make(chan State, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				task, err := m.Start(Spec{Kind: fmt.Sprint("k", w%3), Exclusive: fmt.Sprint("e", (w+i)%4)},
					func(ctx context.Context, p *Reporter) (any, error) {
						p.Phase("a", 100)
						for range 100 {
							p.Add(1)
							if ctx.Err() != nil {
								return nil, ctx.Err()
							}
						}
						return i, nil
					})
				if errors.Is(err, ErrBusy) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if err := m.Cancel(task.ID); err != nil && !errors.Is(err, ErrFinished) {
						t.Error(err)
					}
				}
				if _, err := m.List(Filter{Kind: "k1"}); err != nil {
					t.Error(err)
				}
				got, err := m.Wait(t.Context(), task.ID)
				if err != nil {
					t.Error(err)
					return
				}
				states <- got.State
			}
		})
	}
	wg.Wait()
	close(states)
	for s := range states {
		if s != StateSucceeded && s != StateCancelled {
			t.Errorf("task %s", s)
		}
	}
	if n := m.Running(); n != 0 {
		t.Fatalf("Running() = %d", n)
	}
}
