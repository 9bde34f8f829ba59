package api

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/restore/volume"
)

// fakeOpener counts the points opened and keeps their contexts, so that a
// test can see when a session's reads are cancelled.
type fakeOpener struct {
	mu     sync.Mutex
	opened map[blob.ID]int
	ctxs   map[blob.ID]context.Context
	fail   atomic.Bool
	block  chan struct{} // if not nil, opening waits on it
}

func (f *fakeOpener) open(ctx context.Context, id blob.ID) ([]volume.Volume, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened[id]++
	f.ctxs[id] = ctx
	if f.fail.Load() {
		return nil, errors.New("disk unreadable")
	}
	return []volume.Volume{{ID: "d0"}}, nil
}

func (f *fakeOpener) count(id blob.ID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opened[id]
}

func (f *fakeOpener) ctx(id blob.ID) context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctxs[id]
}

func newFakeOpener() *fakeOpener {
	return &fakeOpener{opened: map[blob.ID]int{}, ctxs: map[blob.ID]context.Context{}}
}

func pid(n byte) blob.ID { return blob.ID{n} }

func TestBrowserReusesAndEvicts(t *testing.T) {
	f := newFakeOpener()
	b := newBrowser(f.open, BrowseOptions{Sessions: 2, Idle: time.Hour})
	defer b.Close()
	ctx := context.Background()

	s1, rel1, err := b.acquire(ctx, pid(1))
	if err != nil || len(s1.vols) != 1 {
		t.Fatal(err)
	}
	_, rel1b, _ := b.acquire(ctx, pid(1))
	if f.count(pid(1)) != 1 {
		t.Fatalf("point 1 opened %d times, want once", f.count(pid(1)))
	}
	_, rel2, _ := b.acquire(ctx, pid(2))
	rel2()
	// A third point evicts the least recently used: point 1, in use, whose
	// reads go on until it is released.
	_, rel3, _ := b.acquire(ctx, pid(3))
	rel3()
	if b.Len() != 2 {
		t.Fatalf("%d sessions, want 2", b.Len())
	}
	if f.ctx(pid(1)).Err() != nil {
		t.Fatal("an evicted session in use was cancelled")
	}
	rel1()
	rel1() // releasing twice is harmless
	if f.ctx(pid(1)).Err() != nil {
		t.Fatal("an evicted session was cancelled while a request still held it")
	}
	rel1b()
	if !errors.Is(context.Cause(f.ctx(pid(1))), errEvicted) {
		t.Fatalf("the evicted session's context: %v", context.Cause(f.ctx(pid(1))))
	}
	// Point 1 opens again when asked for.
	_, rel1, _ = b.acquire(ctx, pid(1))
	rel1()
	if f.count(pid(1)) != 2 {
		t.Fatalf("point 1 opened %d times, want twice", f.count(pid(1)))
	}
}

func TestBrowserIdleAndClose(t *testing.T) {
	f := newFakeOpener()
	b := newBrowser(f.open, BrowseOptions{Idle: time.Minute})
	_, rel, err := b.acquire(context.Background(), pid(1))
	if err != nil {
		t.Fatal(err)
	}
	_, rel2, _ := b.acquire(context.Background(), pid(2))
	rel()
	b.expire(time.Now().Add(2 * time.Minute))
	if b.Len() != 1 || f.ctx(pid(1)).Err() == nil {
		t.Fatalf("after the idle time: %d sessions, point 1's context %v", b.Len(), f.ctx(pid(1)).Err())
	}
	b.Close()
	if !errors.Is(context.Cause(f.ctx(pid(2))), errBrowserClosed) {
		t.Fatalf("after Close, a session in use: %v", context.Cause(f.ctx(pid(2))))
	}
	rel2()
	if _, _, err := b.acquire(context.Background(), pid(3)); err == nil {
		t.Fatal("a closed browser opened a session")
	}
	b.Close()
}

func TestBrowserFailureRetries(t *testing.T) {
	f := newFakeOpener()
	b := newBrowser(f.open, BrowseOptions{})
	defer b.Close()
	f.fail.Store(true)
	if _, _, err := b.acquire(context.Background(), pid(1)); err == nil {
		t.Fatal("a failed open gave a session")
	}
	if b.Len() != 0 {
		t.Fatalf("a failed session stays cached: %d", b.Len())
	}
	f.fail.Store(false)
	if _, rel, err := b.acquire(context.Background(), pid(1)); err != nil {
		t.Fatal(err)
	} else {
		rel()
	}
}

func TestBrowserWaitsAndTimesOut(t *testing.T) {
	f := newFakeOpener()
	f.block = make(chan struct{})
	b := newBrowser(f.open, BrowseOptions{OpenTimeout: 50 * time.Millisecond})
	defer b.Close()
	// A request that gives up leaves the open going.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := b.acquire(ctx, pid(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a request that gave up: %v", err)
	}
	// The open itself is bounded.
	_, _, err := b.acquire(context.Background(), pid(1))
	if err == nil || b.Len() != 0 {
		t.Fatalf("an open past its timeout: %v, %d sessions", err, b.Len())
	}
	close(f.block)
}
