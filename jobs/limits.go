package jobs

import (
	"context"
	"slices"
	"sync"
)

// A limiter hands out the right to run a VM backup: one of total slots for
// the appliance, and one of perStore slots on each datastore the VM uses,
// since creating a snapshot locks VMFS metadata.
//
// A ticket gets all its slots at once or none, under one lock, so no ticket
// ever holds a slot while it waits for another: two VMs cannot deadlock,
// and a waiting VM keeps nothing from those that could run.
//
// Tickets are served in the order they were queued, but a later ticket may
// start ahead of earlier ones whose slots are busy, so that a full datastore
// does not idle the others. To keep a VM on several busy datastores from
// being overtaken for ever, the oldest waiting ticket reserves its
// datastores: no later ticket takes a slot on them until it has started.
type limiter struct {
	total, perStore int

	mu      sync.Mutex
	running int
	inUse   map[string]int // slots taken per datastore
	queue   []*ticket      // waiting, oldest first
}

type ticket struct {
	l      *limiter
	stores []string      // sorted, without duplicates
	ready  chan struct{} // closed when the slots are granted
	state  ticketState   // guarded by l.mu
}

type ticketState int

const (
	waiting ticketState = iota
	holding
	done
)

func newLimiter(total, perStore int) *limiter {
	return &limiter{total: total, perStore: perStore, inUse: make(map[string]int)}
}

// enqueue queues a ticket for a VM on stores. Tickets queued one after the
// other by one goroutine are served in that order.
func (l *limiter) enqueue(stores []string) *ticket {
	s := slices.Clone(stores)
	slices.Sort(s)
	t := &ticket{l: l, stores: slices.Compact(s), ready: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue = append(l.queue, t)
	l.grant()
	return t
}

// wait blocks until t holds its slots and returns nil, or gives t up and
// returns why: the cause of ctx, or errGiveUp when giveUp is closed.
func (t *ticket) wait(ctx context.Context, giveUp <-chan struct{}, errGiveUp error) error {
	select {
	case <-t.ready:
		return nil
	case <-ctx.Done():
		t.release()
		return context.Cause(ctx)
	case <-giveUp:
		t.release()
		return errGiveUp
	}
}

// release gives back t's slots, or its place in the queue. It may be
// called more than once.
func (t *ticket) release() {
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	switch t.state {
	case waiting:
		l.queue = slices.DeleteFunc(l.queue, func(q *ticket) bool { return q == t })
	case holding:
		l.running--
		for _, s := range t.stores {
			if l.inUse[s]--; l.inUse[s] == 0 {
				delete(l.inUse, s)
			}
		}
	case done:
		return
	}
	t.state = done
	l.grant()
}

// grant starts the tickets that can start. l.mu must be held.
func (l *limiter) grant() {
	var reserved []string
	blocked := false
	kept := l.queue[:0]
	for _, t := range l.queue {
		if l.running < l.total && l.free(t.stores) && !(blocked && overlaps(t.stores, reserved)) {
			l.running++
			for _, s := range t.stores {
				l.inUse[s]++
			}
			t.state = holding
			close(t.ready)
			continue
		}
		if !blocked {
			blocked, reserved = true, t.stores
		}
		kept = append(kept, t)
	}
	clear(l.queue[len(kept):])
	l.queue = kept
}

func (l *limiter) free(stores []string) bool {
	for _, s := range stores {
		if l.inUse[s] >= l.perStore {
			return false
		}
	}
	return true
}

// overlaps reports whether the sorted lists a and b share an element.
func overlaps(a, b []string) bool {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			a = a[1:]
		case a[0] > b[0]:
			b = b[1:]
		default:
			return true
		}
	}
	return false
}
