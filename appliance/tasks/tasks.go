// Package tasks runs and keeps track of the appliance's long-running
// operations (store checks, garbage collection, prunes, restores) and
// shows the ones that run elsewhere, such as job runs, the same way, so
// that the API can list, follow and cancel them all alike.
//
// Every change to a task is published on an events.Hub; finished tasks
// can be kept in a badger database so that their history survives a
// restart.
package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/appliance/events"
)

// State is where a task is in its life.
type State string

// The states of a task. Every state but StateRunning is final.
const (
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	// StateInterrupted is given to tasks that were running when the
	// appliance stopped without finishing them.
	StateInterrupted State = "interrupted"
)

var (
	// ErrNotFound is returned, wrapped, for an ID that names no task the
	// Manager knows.
	ErrNotFound = errors.New("task not found")
	// ErrFinished is returned, wrapped, by Cancel for a task that has
	// already finished.
	ErrFinished = errors.New("task already finished")
	// ErrBusy is matched by the *BusyError that Start and Track return
	// when a task with the same Exclusive key is running.
	ErrBusy = errors.New("another task is running")
	// ErrShuttingDown is returned by Start and Track once Shutdown has
	// been called, and is the cause of the cancellation of the tasks
	// that Shutdown stops.
	ErrShuttingDown = errors.New("the appliance is shutting down")
	// ErrCancelled is the cause of the cancellation of a task stopped by
	// Cancel.
	ErrCancelled = errors.New("cancelled")
)

// EventType is the type of the events published for tasks. Their data is
// the Task.
const EventType = "task"

const (
	// progressInterval is how often at most a task's progress is
	// published: more often would only load browsers.
	progressInterval = 250 * time.Millisecond
	// maxFinished is how many finished tasks are kept.
	maxFinished = 1000
	keyPrefix   = "task/"
)

// Progress is how far a task has got in its current phase.
type Progress struct {
	Phase string `json:"phase,omitempty"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"` // 0 if unknown
}

// Task is a snapshot of a task. It shares nothing with the Manager.
type Task struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"` // "check", "gc", "prune", "job-run", "restore"…
	Target   string          `json:"target,omitempty"`
	User     string          `json:"user,omitempty"`
	State    State           `json:"state"`
	Progress Progress        `json:"progress"`
	Started  time.Time       `json:"started"`
	Ended    time.Time       `json:"ended,omitzero"`
	Error    string          `json:"error,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
}

// Spec describes a task to start.
type Spec struct {
	Kind   string
	Target string // what the task works on, e.g. a store or a VM
	User   string // who asked for it
	// Exclusive, if not empty, keeps two tasks with the same key from
	// running at once, e.g. "store" for a check and a gc of one store.
	Exclusive string
}

// BusyError is returned by Start and Track when a task with the same
// Exclusive key is already running. It matches ErrBusy.
type BusyError struct {
	Running Task // the task that holds the key
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%v: %s task %s started %s", ErrBusy, e.Running.Kind, e.Running.ID,
		e.Running.Started.Format(time.RFC3339))
}

// Is reports whether target is ErrBusy.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Filter selects tasks for List.
type Filter struct {
	Kind  string // any if empty
	State State  // any if empty
	Limit int    // 100 if <= 0, at most 1000
}

// Options configure a Manager.
type Options struct {
	// Hub is told of every change to every task. Required.
	Hub *events.Hub
	// DB, if set, keeps the finished tasks across restarts under keys
	// "task/<id>". The Manager does not close it.
	DB *badger.DB
	// Now is the clock, time.Now if nil.
	Now func() time.Time
	Log *slog.Logger
	// OnFinish, if set, is called with each task as it finishes, for
	// instance to record its duration.
	OnFinish func(Task)
}

// Manager runs and keeps track of tasks. It is safe for concurrent use.
type Manager struct {
	hub      *events.Hub
	db       *badger.DB
	now      func() time.Time
	log      *slog.Logger
	onFinish func(Task)

	// ctx is the parent of every started task's context.
	ctx  context.Context
	stop context.CancelCauseFunc
	// wg counts the tasks not yet completely finished.
	wg sync.WaitGroup

	// dbMu orders the database writes as the changes they record, so
	// that a task's final record never loses to its first, nor a
	// deletion to the record it deletes.
	dbMu sync.Mutex

	mu        sync.Mutex
	tasks     map[string]*task // running and kept finished ones
	order     []*task          // tasks by age, oldest first
	running   int
	finished  int
	exclusive map[string]*task // running tasks by Exclusive key
	closing   bool
}

// task is a Manager's record of one task. Its fields are guarded by the
// Manager's mu.
type task struct {
	Task
	exclusive string
	cancel    func(cause error) // stops the work; nil once finished
	cause     error             // why it was cancelled, if it was
	published time.Time         // when its last event went out
	done      chan struct{}     // closed once it has finished completely
}

func (t *task) snapshot() Task {
	s := t.Task
	s.Result = slices.Clone(t.Result)
	return s
}

// NewManager returns a Manager. If o.DB is set it loads the finished tasks
// from it, and marks interrupted the ones a previous process left running;
// so it must be called once per process, before any task starts.
func NewManager(o Options) (*Manager, error) {
	if o.Hub == nil {
		return nil, errors.New("tasks: Options.Hub is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancelCause(context.Background())
	m := &Manager{
		hub:       o.Hub,
		db:        o.DB,
		now:       o.Now,
		log:       o.Log,
		onFinish:  o.OnFinish,
		ctx:       ctx,
		stop:      stop,
		tasks:     make(map[string]*task),
		exclusive: make(map[string]*task),
	}
	if m.db != nil {
		if err := m.load(); err != nil {
			stop(nil)
			return nil, fmt.Errorf("load tasks from %s: %w", m.db.Opts().Dir, err)
		}
	}
	return m, nil
}

// Start starts fn in its own goroutine as a task and returns the task at
// once. fn's context is cancelled by Cancel and by Shutdown; fn tells its
// progress through p. What fn returns becomes the task's Result, as JSON,
// and its error the task's Error. A task whose fn fails after its context
// was cancelled is cancelled, with the cause of the cancellation as its
// Error; one whose fn succeeds regardless has succeeded.
func (m *Manager) Start(spec Spec, fn func(ctx context.Context, p *Reporter) (any, error)) (Task, error) {
	ctx, cancel := context.WithCancelCause(m.ctx)
	t, snap, err := m.add(spec, cancel)
	if err != nil {
		cancel(nil)
		return Task{}, err
	}
	go func() {
		defer cancel(nil)
		result, err := m.call(ctx, t, fn)
		cancelled := err != nil && ctx.Err() != nil
		if cancelled {
			err = context.Cause(ctx)
		}
		m.finish(t, result, err, cancelled)
	}()
	return snap, nil
}

// call runs fn, turning a panic into an error so that a bug in one task
// does not take down the appliance and every backup running in it.
func (m *Manager) call(ctx context.Context, t *task, fn func(context.Context, *Reporter) (any, error)) (result any, err error) {
	defer func() {
		if v := recover(); v != nil {
			m.log.Error("task panicked", "id", t.ID, "kind", t.Kind, "panic", v, "stack", string(debug.Stack()))
			result, err = nil, fmt.Errorf("panic: %v", v)
		}
	}()
	return fn(ctx, &Reporter{m: m, t: t})
}

// Track shows as a task work that runs elsewhere, such as a job run owned
// by the job runner. Cancel and Shutdown call cancel, which may be nil if
// the work cannot be stopped; the work is expected to end soon after and
// call finish, which records its result and error as Start does for a
// function's, and whether it was cancelled. Calls of finish after the
// first do nothing.
func (m *Manager) Track(spec Spec, cancel func()) (Task, *Reporter, func(result any, err error, cancelled bool), error) {
	t, snap, err := m.add(spec, func(error) {
		if cancel != nil {
			cancel()
		}
	})
	if err != nil {
		return Task{}, nil, nil, err
	}
	finish := func(result any, err error, cancelled bool) {
		m.finish(t, result, err, cancelled)
	}
	return snap, &Reporter{m: m, t: t}, finish, nil
}

// add registers a new running task.
func (m *Manager) add(spec Spec, cancel func(error)) (*task, Task, error) {
	m.dbMu.Lock()
	defer m.dbMu.Unlock()
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return nil, Task{}, fmt.Errorf("start %s task: %w", spec.Kind, ErrShuttingDown)
	}
	if spec.Exclusive != "" {
		if holder := m.exclusive[spec.Exclusive]; holder != nil {
			err := &BusyError{Running: holder.snapshot()}
			m.mu.Unlock()
			return nil, Task{}, err
		}
	}
	now := m.now()
	t := &task{
		Task: Task{
			ID:      m.newID(now),
			Kind:    spec.Kind,
			Target:  spec.Target,
			User:    spec.User,
			State:   StateRunning,
			Started: now,
		},
		exclusive: spec.Exclusive,
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	m.tasks[t.ID] = t
	m.order = append(m.order, t)
	m.running++
	if spec.Exclusive != "" {
		m.exclusive[spec.Exclusive] = t
	}
	m.wg.Add(1)
	snap := m.publish(t, now)
	m.mu.Unlock()

	m.log.Info("task started", "id", t.ID, "kind", t.Kind, "target", t.Target, "user", t.User)
	// Recorded as running so that, if the appliance dies before the
	// task finishes, the next process can tell that it was interrupted.
	m.persist(snap, nil)
	return t, snap, nil
}

// newID returns a new task ID, which sorts by start time. m.mu must be
// held.
func (m *Manager) newID(now time.Time) string {
	for {
		var b [4]byte
		rand.Read(b[:])
		id := fmt.Sprintf("t-%012x-%s", now.UnixMilli(), hex.EncodeToString(b[:]))
		if m.tasks[id] == nil {
			return id
		}
	}
}

// publish sends t's state to the hub and returns it. m.mu must be held.
func (m *Manager) publish(t *task, now time.Time) Task {
	t.published = now
	snap := t.snapshot()
	m.hub.Publish(EventType, snap)
	return snap
}

// finish records the end of t.
func (m *Manager) finish(t *task, result any, err error, cancelled bool) {
	var raw json.RawMessage
	if result != nil {
		var merr error
		if raw, merr = json.Marshal(result); merr != nil {
			m.log.Warn("task result not recorded", "id", t.ID, "kind", t.Kind, "err", merr)
		}
	}

	m.dbMu.Lock()
	m.mu.Lock()
	if t.State != StateRunning {
		m.mu.Unlock()
		m.dbMu.Unlock()
		return
	}
	now := m.now()
	t.Ended = now
	t.Result = raw
	t.cancel = nil
	switch {
	case cancelled:
		t.State = StateCancelled
		switch {
		case t.cause != nil:
			t.Error = t.cause.Error()
		case err != nil:
			t.Error = err.Error()
		default:
			t.Error = ErrCancelled.Error()
		}
	case err != nil:
		t.State = StateFailed
		t.Error = err.Error()
	default:
		t.State = StateSucceeded
	}
	m.running--
	m.finished++
	if t.exclusive != "" && m.exclusive[t.exclusive] == t {
		delete(m.exclusive, t.exclusive)
	}
	evicted := m.evict()
	snap := m.publish(t, now)
	m.mu.Unlock()
	m.persist(snap, evicted)
	m.dbMu.Unlock()

	m.log.Info("task finished", "id", snap.ID, "kind", snap.Kind, "target", snap.Target,
		"state", snap.State, "duration", snap.Ended.Sub(snap.Started), "err", snap.Error)
	if m.onFinish != nil {
		m.onFinish(snap)
	}
	// Only now, so that whoever waits for the task, Shutdown included,
	// finds it recorded everywhere.
	close(t.done)
	m.wg.Done()
}

// evict forgets the oldest finished tasks beyond maxFinished and returns
// their IDs. m.mu must be held.
func (m *Manager) evict() []string {
	var evicted []string
	m.order = slices.DeleteFunc(m.order, func(t *task) bool {
		if m.finished <= maxFinished || t.State == StateRunning {
			return false
		}
		delete(m.tasks, t.ID)
		m.finished--
		evicted = append(evicted, t.ID)
		return true
	})
	return evicted
}

// persist writes t and deletes the evicted tasks in the database, if
// there is one. The failure to keep history is logged rather than
// returned: it must not fail the work itself. m.dbMu must be held.
func (m *Manager) persist(t Task, evicted []string) {
	if m.db == nil {
		return
	}
	err := m.db.Update(func(txn *badger.Txn) error {
		for _, id := range evicted {
			if err := txn.Delete([]byte(keyPrefix + id)); err != nil {
				return err
			}
		}
		if slices.Contains(evicted, t.ID) {
			return nil
		}
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		return txn.Set([]byte(keyPrefix+t.ID), b)
	})
	if err != nil {
		m.log.Error("task not saved", "id", t.ID, "kind", t.Kind, "state", t.State, "err", err)
	}
}

// load reads the tasks kept in the database, which, keyed by ID, come
// oldest first.
func (m *Manager) load() error {
	var stale []Task
	err := m.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var t Task
			err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &t) })
			if err != nil {
				// One bad record must not cost the rest of the history.
				m.log.Warn("unreadable task record skipped", "key", string(it.Item().Key()), "err", err)
				continue
			}
			if t.State == StateRunning {
				t.State = StateInterrupted
				t.Ended = m.now()
				t.Error = "interrupted: the appliance stopped"
				stale = append(stale, t)
			}
			done := make(chan struct{})
			close(done)
			tt := &task{Task: t, done: done}
			m.tasks[t.ID] = tt
			m.order = append(m.order, tt)
			m.finished++
		}
		return nil
	})
	if err != nil {
		return err
	}
	evicted := m.evict()
	if len(stale) == 0 && len(evicted) == 0 {
		return nil
	}
	m.log.Info("tasks interrupted by the last stop", "count", len(stale))
	wb := m.db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range evicted {
		if err := wb.Delete([]byte(keyPrefix + id)); err != nil {
			return err
		}
	}
	for _, t := range stale {
		if slices.Contains(evicted, t.ID) {
			continue
		}
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		if err := wb.Set([]byte(keyPrefix+t.ID), b); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// Get returns the task id, running or finished.
func (m *Manager) Get(id string) (Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[id]
	if t == nil {
		return Task{}, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	return t.snapshot(), nil
}

// List returns the tasks that f selects, running and finished, newest
// first.
func (m *Manager) List(f Filter) ([]Task, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, maxFinished)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Task
	for _, t := range slices.Backward(m.order) {
		if len(out) == limit {
			break
		}
		if (f.Kind == "" || t.Kind == f.Kind) && (f.State == "" || t.State == f.State) {
			out = append(out, t.snapshot())
		}
	}
	return out, nil
}

// Cancel asks the task id to stop. The task is cancelled once its work
// has returned; Wait waits for that.
func (m *Manager) Cancel(id string) error {
	m.mu.Lock()
	t := m.tasks[id]
	if t == nil {
		m.mu.Unlock()
		return fmt.Errorf("cancel task %s: %w", id, ErrNotFound)
	}
	if t.State != StateRunning {
		m.mu.Unlock()
		return fmt.Errorf("cancel task %s: %w", id, ErrFinished)
	}
	if t.cause == nil {
		t.cause = ErrCancelled
	}
	cancel := t.cancel
	m.mu.Unlock()
	// Outside the lock: a tracked task's cancel may finish it at once.
	cancel(ErrCancelled)
	m.log.Info("task cancelled", "id", id)
	return nil
}

// Wait waits for the task id to finish, or ctx to end, and returns it.
func (m *Manager) Wait(ctx context.Context, id string) (Task, error) {
	m.mu.Lock()
	t := m.tasks[id]
	m.mu.Unlock()
	if t == nil {
		return Task{}, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		return Task{}, fmt.Errorf("wait for task %s: %w", id, context.Cause(ctx))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return t.snapshot(), nil
}

// Running returns how many tasks are running.
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

// Shutdown refuses new tasks, cancels the running ones with the cause
// ErrShuttingDown, and waits until they have finished or ctx ends.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	var cancels []func(error)
	for _, t := range m.order {
		if t.State == StateRunning {
			if t.cause == nil {
				t.cause = ErrShuttingDown
			}
			cancels = append(cancels, t.cancel)
		}
	}
	m.mu.Unlock()
	m.stop(ErrShuttingDown)
	for _, cancel := range cancels {
		cancel(ErrShuttingDown)
	}

	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shut down tasks: %d still running: %w", m.Running(), context.Cause(ctx))
	}
}

// Reporter is how a task tells its progress. Its methods do nothing once
// the task has finished.
type Reporter struct {
	m *Manager
	t *task
}

// Phase starts a new phase of the task, of total units of work (0 if not
// known), none of them done yet. Unlike the progress within a phase, a
// new phase is always published.
func (p *Reporter) Phase(name string, total int64) {
	p.update(true, func(pr *Progress) { *pr = Progress{Phase: name, Total: total} })
}

// Set records that done units of the current phase are done.
func (p *Reporter) Set(done int64) {
	p.update(false, func(pr *Progress) { pr.Done = done })
}

// Add records that n more units of the current phase are done.
func (p *Reporter) Add(n int64) {
	p.update(false, func(pr *Progress) { pr.Done += n })
}

func (p *Reporter) update(always bool, change func(*Progress)) {
	m, t := p.m, p.t
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.State != StateRunning {
		return
	}
	change(&t.Progress)
	if now := m.now(); always || now.Sub(t.published) >= progressInterval {
		m.publish(t, now)
	}
}
