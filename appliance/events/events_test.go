package events

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"testing"
)

// receive reads n events from ch, failing if it closes first.
func receive(t *testing.T, ch <-chan Event, n int) []Event {
	t.Helper()
	var got []Event
	for range n {
		ev, ok := <-ch
		if !ok {
			t.Fatalf("channel closed after %d of %d events: %v", len(got), n, got)
		}
		got = append(got, ev)
	}
	return got
}

// drain reads ch until it closes.
func drain(ch <-chan Event) []Event {
	var got []Event
	for ev := range ch {
		got = append(got, ev)
	}
	return got
}

func ids(evs []Event) []uint64 {
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

func equalIDs(a []uint64, b ...uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPublishOrderAndData(t *testing.T) {
	h := NewHub(0)
	ch := h.Subscribe(t.Context(), 0, nil)
	for i := range 5 {
		ev := h.Publish("task", map[string]int{"n": i})
		if ev.ID != uint64(i+1) {
			t.Fatalf("Publish #%d returned ID %d", i, ev.ID)
		}
	}
	got := receive(t, ch, 5)
	if !equalIDs(ids(got), 1, 2, 3, 4, 5) {
		t.Fatalf("IDs = %v, want 1..5", ids(got))
	}
	for i, ev := range got {
		var d struct{ N int }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "task" || d.N != i || ev.Time.IsZero() {
			t.Errorf("event %d = %+v (data %s)", i, ev, ev.Data)
		}
	}
}

func TestPublishUnmarshallable(t *testing.T) {
	h := NewHub(0)
	ev := h.Publish("bad", math.Inf(1))
	var d struct{ Error string }
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.Error == "" {
		t.Fatalf("data = %s, %v; want an object with an error", ev.Data, err)
	}
}

func TestReplayAfterID(t *testing.T) {
	h := NewHub(0)
	for range 10 {
		h.Publish("x", nil)
	}
	ch := h.Subscribe(t.Context(), 7, nil)
	h.Publish("x", nil)
	if got := ids(receive(t, ch, 4)); !equalIDs(got, 8, 9, 10, 11) {
		t.Fatalf("IDs = %v, want 8..11", got)
	}
	if len(ch) != 0 {
		t.Fatalf("%d unexpected events buffered", len(ch))
	}
}

func TestReplayLongerThanBuffer(t *testing.T) {
	h := NewHub(1000)
	for range 1000 {
		h.Publish("x", nil)
	}
	ch := h.Subscribe(t.Context(), 0, nil)
	for range 200 {
		h.Publish("x", nil)
	}
	got := receive(t, ch, 1200)
	for i, ev := range got {
		if ev.ID != uint64(i+1) {
			t.Fatalf("event %d has ID %d", i, ev.ID)
		}
	}
}

func TestLagged(t *testing.T) {
	h := NewHub(4)
	for range 10 {
		h.Publish("x", nil) // the history keeps 7..10
	}
	for _, tc := range []struct {
		after  uint64
		lagged bool
		want   []uint64
	}{
		{after: 0, lagged: true, want: []uint64{7, 8, 9, 10}},
		{after: 5, lagged: true, want: []uint64{7, 8, 9, 10}},
		{after: 6, want: []uint64{7, 8, 9, 10}},
		{after: 9, want: []uint64{10}},
		{after: 10, want: nil},
		// An ID from before a restart, when IDs started again from 1.
		{after: 99, lagged: true, want: []uint64{7, 8, 9, 10}},
	} {
		t.Run(fmt.Sprint(tc.after), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			ch := h.Subscribe(ctx, tc.after, nil)
			cancel()
			got := drain(ch)
			if tc.lagged {
				if len(got) == 0 || got[0].Type != TypeLagged || got[0].ID != 0 {
					t.Fatalf("got %v, want a lagged event first", got)
				}
				got = got[1:]
			}
			if !equalIDs(ids(got), tc.want...) {
				t.Fatalf("IDs = %v, want %v", ids(got), tc.want)
			}
		})
	}
}

func TestNothingLaggedOnEmptyHub(t *testing.T) {
	h := NewHub(4)
	ctx, cancel := context.WithCancel(t.Context())
	ch := h.Subscribe(ctx, 0, nil)
	cancel()
	if got := drain(ch); len(got) != 0 {
		t.Fatalf("got %v from an empty hub", got)
	}
}

func TestSlowSubscriberDisconnected(t *testing.T) {
	h := NewHub(0)
	slow := h.Subscribe(t.Context(), 0, nil)
	fast := h.Subscribe(t.Context(), 0, nil)
	const batches, batch = 10, 100
	for b := range batches {
		for range batch {
			h.Publish("x", nil)
		}
		got := receive(t, fast, batch)
		if got[0].ID != uint64(b*batch+1) || got[batch-1].ID != uint64((b+1)*batch) {
			t.Fatalf("fast subscriber got %d..%d in batch %d", got[0].ID, got[batch-1].ID, b)
		}
	}

	got := drain(slow)
	if len(got) != subscriberBuffer {
		t.Fatalf("slow subscriber got %d events, want %d", len(got), subscriberBuffer)
	}
	last := got[len(got)-1]
	if last.Type != TypeLagged {
		t.Fatalf("slow subscriber's last event is %+v, want lagged", last)
	}
	if want := ids(got[:len(got)-1]); want[0] != 1 || want[len(want)-1] != subscriberBuffer-1 {
		t.Fatalf("slow subscriber got IDs %d..%d", want[0], want[len(want)-1])
	}

	// The slow subscriber can resume from the history.
	ctx, cancel := context.WithCancel(t.Context())
	again := h.Subscribe(ctx, subscriberBuffer-1, nil)
	cancel()
	got = drain(again)
	if len(got) != batches*batch-subscriberBuffer+1 || got[0].ID != subscriberBuffer {
		t.Fatalf("resumed subscriber got %d events from %d", len(got), got[0].ID)
	}
}

func TestFilter(t *testing.T) {
	h := NewHub(0)
	h.Publish("task", nil)
	h.Publish("job-run", nil)
	onlyTasks := func(ev Event) bool { return ev.Type == "task" }
	ch := h.Subscribe(t.Context(), 0, onlyTasks)
	h.Publish("vm-backup", nil)
	h.Publish("task", nil)
	if got := ids(receive(t, ch, 2)); !equalIDs(got, 1, 4) {
		t.Fatalf("IDs = %v, want 1 and 4", got)
	}
	if len(ch) != 0 {
		t.Fatalf("%d unexpected events buffered", len(ch))
	}
}

func TestContextEndCloses(t *testing.T) {
	h := NewHub(0)
	ctx, cancel := context.WithCancel(t.Context())
	ch := h.Subscribe(ctx, 0, nil)
	other := h.Subscribe(t.Context(), 0, nil)
	h.Publish("x", nil)
	cancel()
	if got := drain(ch); len(got) > 1 {
		t.Fatalf("got %v after cancel", got)
	}
	h.Publish("x", nil)
	if got := ids(receive(t, other, 2)); !equalIDs(got, 1, 2) {
		t.Fatalf("other subscriber got %v", got)
	}
	h.mu.Lock()
	n := len(h.subs)
	h.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d subscribers left, want 1", n)
	}

	done, cancel := context.WithCancel(t.Context())
	cancel()
	if got := drain(h.Subscribe(done, 0, nil)); len(got) > 2 {
		t.Fatalf("subscriber with an ended context got %v", got)
	}
}

func TestClose(t *testing.T) {
	h := NewHub(0)
	a := h.Subscribe(t.Context(), 0, nil)
	b := h.Subscribe(t.Context(), 0, nil)
	h.Publish("x", nil)
	h.Close()
	if got := ids(drain(a)); !equalIDs(got, 1) {
		t.Fatalf("a got %v", got)
	}
	if got := ids(drain(b)); !equalIDs(got, 1) {
		t.Fatalf("b got %v", got)
	}
	if got := drain(h.Subscribe(t.Context(), 0, nil)); len(got) != 0 {
		t.Fatalf("subscriber after Close got %v", got)
	}
	if ev := h.Publish("x", nil); ev.ID != 2 {
		t.Fatalf("Publish after Close returned ID %d", ev.ID)
	}
	h.Close() // twice is harmless
}

// TestConcurrent is for the race detector: every subscriber sees strictly
// increasing IDs, and all of them unless it was cut off as lagged.
func TestConcurrent(t *testing.T) {
	h := NewHub(64)
	const publishers, perPublisher, subscribers = 8, 500, 8
	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	ctx, cancel := context.WithCancel(t.Context())
	for i := range subscribers {
		var filter func(Event) bool
		if i%2 == 1 {
			filter = func(ev Event) bool { return ev.ID%2 == 0 }
		}
		ch := h.Subscribe(ctx, 0, filter)
		wg.Go(func() {
			var last uint64
			n, lagged := 0, false
			for ev := range ch {
				if ev.Type == TypeLagged {
					lagged = true
					continue
				}
				if ev.ID <= last || (filter != nil && !filter(ev)) {
					errs <- fmt.Errorf("subscriber %d got ID %d after %d", i, ev.ID, last)
					return
				}
				last = ev.ID
				n++
			}
			want := publishers * perPublisher
			if filter != nil {
				want /= 2
			}
			if !lagged && n != want {
				errs <- fmt.Errorf("subscriber %d got %d events, want %d", i, n, want)
			}
		})
	}
	var pub sync.WaitGroup
	for p := range publishers {
		pub.Go(func() {
			for i := range perPublisher {
				h.Publish("x", [2]int{p, i})
			}
		})
	}
	// Subscribers that come and go while events are published.
	for range 4 {
		pub.Go(func() {
			for range 50 {
				sctx, scancel := context.WithCancel(ctx)
				ch := h.Subscribe(sctx, 0, nil)
				scancel()
				drain(ch)
			}
		})
	}
	pub.Wait()
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
