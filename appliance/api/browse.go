package api

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/restore"
	"github.com/bulwarkbackup/bulwark/restore/files"
	"github.com/bulwarkbackup/bulwark/restore/volume"
)

// BrowseOptions bound the file-level sessions of a Browser and the work
// of one file-level request. Zero fields take the defaults.
type BrowseOptions struct {
	// Sessions is how many points are kept open at once (default 8).
	Sessions int
	// Idle is how long a point nobody uses stays open (default 10 min).
	Idle time.Duration
	// OpenTimeout bounds finding a point's volumes (default 2 min).
	OpenTimeout time.Duration
	// ListTimeout bounds one stat or listing (default 1 min).
	ListTimeout time.Duration
	// SearchTimeout bounds one search (default 2 min).
	SearchTimeout time.Duration
	// Archive bounds one tar or zip download (default 1,000,000 entries
	// and 256 GiB).
	Archive files.Limits
}

func (o *BrowseOptions) defaults() {
	if o.Sessions <= 0 {
		o.Sessions = 8
	}
	if o.Idle <= 0 {
		o.Idle = 10 * time.Minute
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = 2 * time.Minute
	}
	if o.ListTimeout <= 0 {
		o.ListTimeout = time.Minute
	}
	if o.SearchTimeout <= 0 {
		o.SearchTimeout = 2 * time.Minute
	}
	if o.Archive.MaxFiles <= 0 {
		o.Archive.MaxFiles = 1_000_000
	}
	if o.Archive.MaxBytes <= 0 {
		o.Archive.MaxBytes = 256 << 30
	}
}

// errBrowserClosed is the cause of the sessions' end at shutdown.
var errBrowserClosed = errors.New("file-level sessions closed: the appliance is shutting down")

// errEvicted is the cause of a session's end when it made room for another
// or sat idle.
var errEvicted = errors.New("file-level session closed")

// A Browser keeps the volumes of the points being browsed open: finding
// them reads partition tables and superblocks from the store, which every
// request of a session would otherwise repeat. It keeps a few points,
// least recently used out first, and closes those left idle. Its methods
// are safe for concurrent use.
type Browser struct {
	o    BrowseOptions
	open func(ctx context.Context, id blob.ID) ([]volume.Volume, error)

	mu     sync.Mutex
	lru    *list.List // of *browseSession, most recently used first
	byID   map[blob.ID]*list.Element
	closed bool

	stopJanitor context.CancelFunc
	janitorDone chan struct{}
}

// A browseSession is one point's volumes, opened once for all the
// requests that browse it. Its context carries the reads of its volumes:
// it is cancelled when the session leaves the cache and nobody uses it.
type browseSession struct {
	id     blob.ID
	ctx    context.Context
	cancel context.CancelCauseFunc
	ready  chan struct{} // closed when vols or err is set
	vols   []volume.Volume
	err    error

	// Guarded by the Browser's mu.
	refs    int
	used    time.Time
	evicted bool
}

// NewBrowser returns a Browser of the points of store.
func NewBrowser(store *chunkstore.Store, o BrowseOptions) *Browser {
	return newBrowser(func(ctx context.Context, id blob.ID) ([]volume.Volume, error) {
		return restore.Volumes(ctx, store, id)
	}, o)
}

func newBrowser(open func(context.Context, blob.ID) ([]volume.Volume, error), o BrowseOptions) *Browser {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Browser{o: o, open: open, lru: list.New(), byID: map[blob.ID]*list.Element{},
		stopJanitor: cancel, janitorDone: make(chan struct{})}
	go b.janitor(ctx)
	return b
}

// Options returns the options in force, defaults filled in.
func (b *Browser) Options() BrowseOptions { return b.o }

// Close ends every session, cancelling the reads under way, and refuses
// new ones.
func (b *Browser) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	for e := b.lru.Front(); e != nil; e = e.Next() {
		e.Value.(*browseSession).cancel(errBrowserClosed)
	}
	b.lru.Init()
	clear(b.byID)
	b.mu.Unlock()
	b.stopJanitor()
	<-b.janitorDone
}

// Len is how many sessions are open.
func (b *Browser) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lru.Len()
}

// acquire returns the session of point id, opening it if needed, and the
// function that gives it back. ctx bounds the wait only: the session
// outlives the request.
func (b *Browser) acquire(ctx context.Context, id blob.ID) (*browseSession, func(), error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, nil, newError(http.StatusServiceUnavailable, "unavailable", "%s", errBrowserClosed)
	}
	var s *browseSession
	if e, ok := b.byID[id]; ok {
		s = e.Value.(*browseSession)
		b.lru.MoveToFront(e)
	} else {
		sctx, cancel := context.WithCancelCause(context.Background())
		s = &browseSession{id: id, ctx: sctx, cancel: cancel, ready: make(chan struct{})}
		b.byID[id] = b.lru.PushFront(s)
		for b.lru.Len() > b.o.Sessions {
			b.evictLocked(b.lru.Back())
		}
		go b.load(s)
	}
	s.refs++
	s.used = time.Now()
	b.mu.Unlock()

	release := sync.OnceFunc(func() { b.release(s) })
	select {
	case <-s.ready:
	case <-ctx.Done():
		release()
		return nil, nil, ctx.Err()
	}
	if s.err != nil {
		release()
		return nil, nil, s.err
	}
	return s, release, nil
}

// load finds the session's volumes, within the open timeout. A session
// that fails leaves the cache, so that the next request tries again.
func (b *Browser) load(s *browseSession) {
	timer := time.AfterFunc(b.o.OpenTimeout, func() {
		s.cancel(fmt.Errorf("finding the volumes of point %s took more than %v", s.id.Short(), b.o.OpenTimeout))
	})
	vols, err := b.open(s.ctx, s.id)
	timer.Stop()
	if err == nil && s.ctx.Err() != nil {
		err = context.Cause(s.ctx)
	}
	if err != nil {
		err = fmt.Errorf("volumes of point %s: %w", s.id.Short(), err)
		b.mu.Lock()
		if e, ok := b.byID[s.id]; ok && e.Value == s {
			b.evictLocked(e)
		}
		b.mu.Unlock()
	}
	s.vols, s.err = vols, err
	close(s.ready)
}

// evictLocked takes a session out of the cache; its reads end now if
// nobody uses it, else when the last user gives it back.
func (b *Browser) evictLocked(e *list.Element) {
	s := e.Value.(*browseSession)
	b.lru.Remove(e)
	delete(b.byID, s.id)
	s.evicted = true
	if s.refs == 0 {
		s.cancel(errEvicted)
	}
}

func (b *Browser) release(s *browseSession) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s.refs--
	s.used = time.Now()
	if s.evicted && s.refs == 0 {
		s.cancel(errEvicted)
	}
}

// janitor closes the sessions left idle.
func (b *Browser) janitor(ctx context.Context) {
	defer close(b.janitorDone)
	t := time.NewTicker(min(b.o.Idle/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.expire(now)
		}
	}
}

// expire evicts the sessions unused since Idle before now.
func (b *Browser) expire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for e := b.lru.Back(); e != nil; {
		prev := e.Prev()
		if s := e.Value.(*browseSession); s.refs == 0 && now.Sub(s.used) >= b.o.Idle {
			b.evictLocked(e)
		}
		e = prev
	}
}
