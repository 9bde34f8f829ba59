package jobs

import (
	"context"
	"errors"
	"testing"
)

// The limiter grants synchronously, under its lock, so whether a ticket
// holds its slots can be checked right after any enqueue or release.
func ready(t *ticket) bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

func wantReady(t *testing.T, want []bool, tickets ...*ticket) {
	t.Helper()
	for i, tk := range tickets {
		if got := ready(tk); got != want[i] {
			t.Errorf("ticket %d on %v: ready %v, want %v", i+1, tk.stores, got, want[i])
		}
	}
}

func TestLimiterTotal(t *testing.T) {
	l := newLimiter(2, 10)
	a, b, c := l.enqueue([]string{"A"}), l.enqueue([]string{"B"}), l.enqueue([]string{"C"})
	wantReady(t, []bool{true, true, false}, a, b, c)
	a.release()
	wantReady(t, []bool{true, true}, b, c)
	if l.running != 2 {
		t.Errorf("running %d, want 2", l.running)
	}
}

func TestLimiterPerDatastoreLetsOthersPass(t *testing.T) {
	l := newLimiter(10, 2)
	a1, a2, a3 := l.enqueue([]string{"A"}), l.enqueue([]string{"A"}), l.enqueue([]string{"A"})
	b := l.enqueue([]string{"B"})
	// a3 waits for A, but B is free and b does not need A.
	wantReady(t, []bool{true, true, false, true}, a1, a2, a3, b)
	a2.release()
	wantReady(t, []bool{true}, a3)
	if got := l.inUse["A"]; got != 2 {
		t.Errorf("A in use %d, want 2", got)
	}
}

func TestLimiterSeveralDatastoresNoStarvation(t *testing.T) {
	l := newLimiter(10, 1)
	a, b := l.enqueue([]string{"A"}), l.enqueue([]string{"B"})
	ab := l.enqueue([]string{"B", "A"}) // needs both: waits, holding nothing
	b2 := l.enqueue([]string{"B"})
	c := l.enqueue([]string{"C"})
	wantReady(t, []bool{true, true, false, false, true}, a, b, ab, b2, c)
	if l.inUse["A"] != 1 || l.inUse["B"] != 1 {
		t.Errorf("in use %v: a waiting ticket holds slots", l.inUse)
	}

	// B frees up, but ab, the oldest waiter, has reserved it: b2 may not
	// take it, or a stream of VMs on B could keep ab waiting for ever.
	b.release()
	wantReady(t, []bool{false, false}, ab, b2)
	a.release()
	wantReady(t, []bool{true, false}, ab, b2)
	ab.release()
	wantReady(t, []bool{true}, b2)
}

func TestLimiterDuplicateDatastores(t *testing.T) {
	// A VM with two disks on one datastore needs one slot there, not two:
	// with one slot per datastore it would otherwise wait for itself.
	l := newLimiter(10, 1)
	if tk := l.enqueue([]string{"A", "A"}); !ready(tk) {
		t.Fatal("a VM listing its datastore twice is not started")
	}
	if l.inUse["A"] != 1 {
		t.Errorf("A in use %d, want 1", l.inUse["A"])
	}
}

func TestLimiterWithoutDatastores(t *testing.T) {
	l := newLimiter(1, 1)
	a, b := l.enqueue(nil), l.enqueue(nil)
	wantReady(t, []bool{true, false}, a, b)
	a.release()
	wantReady(t, []bool{true}, b)
}

func TestLimiterGiveUp(t *testing.T) {
	l := newLimiter(10, 1)
	a := l.enqueue([]string{"A"})
	waiting := l.enqueue([]string{"A", "B"})
	b := l.enqueue([]string{"B"}) // held back by waiting's reservation
	wantReady(t, []bool{true, false, false}, a, waiting, b)

	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("stop")
	cancel(cause)
	if err := waiting.wait(ctx, nil, nil); !errors.Is(err, cause) {
		t.Fatalf("wait = %v, want %v", err, cause)
	}
	// Gone from the queue, its reservation is lifted.
	wantReady(t, []bool{true}, b)
	if len(l.queue) != 0 {
		t.Errorf("queue %d long, want empty", len(l.queue))
	}

	closed := make(chan struct{})
	close(closed)
	late := l.enqueue([]string{"A"})
	errClosed := errors.New("closed")
	if err := late.wait(t.Context(), closed, errClosed); !errors.Is(err, errClosed) {
		t.Fatalf("wait = %v, want %v", err, errClosed)
	}
	a.release()
	a.release() // a second release must not give back a slot twice
	b.release()
	if l.running != 0 || len(l.inUse) != 0 || len(l.queue) != 0 {
		t.Errorf("after all releases: running %d, in use %v, queue %d", l.running, l.inUse, len(l.queue))
	}
}

func TestOverlaps(t *testing.T) {
	for _, c := range []struct {
		a, b []string
		want bool
	}{
		{[]string{"A", "C"}, []string{"B", "C"}, true},
		{[]string{"A", "C"}, []string{"B", "D"}, false},
		{nil, []string{"A"}, false},
	} {
		if got := overlaps(c.a, c.b); got != c.want {
			t.Errorf("overlaps(%v, %v) = %v", c.a, c.b, got)
		}
	}
}
