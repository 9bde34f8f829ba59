package jobstest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/jobs"
	"github.com/bulwarkbackup/bulwark/jobs/jobstest"
)

var _ jobs.Clock = (*jobstest.Clock)(nil)

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(ch <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-ch:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestClock(t *testing.T) {
	c := jobstest.NewClock(start)
	later := c.After(2 * time.Hour)
	soon := c.After(time.Hour)
	if at, ok := fired(c.After(0)); !ok || !at.Equal(start) {
		t.Errorf("After(0): %v, %v; want to fire at once", at, ok)
	}
	if p := c.Pending(); !slices.Equal(p, []time.Time{start.Add(time.Hour), start.Add(2 * time.Hour)}) {
		t.Errorf("Pending = %v", p)
	}

	c.Advance(59 * time.Minute)
	if _, ok := fired(soon); ok {
		t.Error("a timer fired early")
	}
	c.Advance(time.Minute)
	if at, ok := fired(soon); !ok || !at.Equal(start.Add(time.Hour)) {
		t.Errorf("timer due at 1h: %v, %v", at, ok)
	}
	if _, ok := fired(later); ok {
		t.Error("the 2h timer fired at 1h")
	}
	c.Set(start.Add(3 * time.Hour))
	if _, ok := fired(later); !ok {
		t.Error("the 2h timer did not fire at 3h")
	}
	if !c.Now().Equal(start.Add(3*time.Hour)) || len(c.Pending()) != 0 {
		t.Errorf("now %v, pending %v", c.Now(), c.Pending())
	}
}

func TestClockBlockUntil(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := jobstest.NewClock(start)
	go func() {
		<-c.After(time.Minute)
		c.After(time.Hour)
	}()
	if err := c.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if err := c.WaitFor(ctx, start.Add(time.Minute+time.Hour)); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.BlockUntil(short, 2); err == nil {
		t.Error("BlockUntil with a cancelled context and too few timers returned nil")
	}
}
