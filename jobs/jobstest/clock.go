// Package jobstest provides helpers for testing code that uses package
// jobs.
package jobstest

import (
	"context"
	"slices"
	"sync"
	"time"
)

// A Clock is a fake jobs.Clock whose time moves only when the test moves
// it. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []timer       // pending, unordered
	changed chan struct{} // closed and replaced when timers change
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a Clock set to now.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now, changed: make(chan struct{})}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once the clock
// has been moved d past the current time. A d of zero or less fires at
// once.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, timer{at: c.now.Add(d), ch: ch})
	c.notify()
	return ch
}

// Advance moves the clock d forward and fires the timers that come due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	t := c.now.Add(d)
	c.mu.Unlock()
	c.Set(t)
}

// Set moves the clock to t, which must not be before its time, and fires
// the timers that come due, earliest first.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Before(c.now) {
		panic("jobstest: Clock.Set moves the clock back from " + c.now.String() + " to " + t.String())
	}
	c.now = t
	var due []timer
	c.timers = slices.DeleteFunc(c.timers, func(tm timer) bool {
		if tm.at.After(t) {
			return false
		}
		due = append(due, tm)
		return true
	})
	slices.SortStableFunc(due, func(a, b timer) int { return a.at.Compare(b.at) })
	for _, tm := range due {
		tm.ch <- t
	}
	if len(due) > 0 {
		c.notify()
	}
}

// Pending returns the times at which the timers not yet fired will fire,
// earliest first. Timers whose channel nobody reads any more count until
// they fire.
func (c *Clock) Pending() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := make([]time.Time, len(c.timers))
	for i, tm := range c.timers {
		ts[i] = tm.at
	}
	slices.SortFunc(ts, time.Time.Compare)
	return ts
}

// BlockUntil waits until at least n timers are pending, that is until the
// code under test is waiting, or ctx ends.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		ok, changed := len(c.timers) >= n, c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitFor waits until a timer is pending that fires at t, or ctx ends.
func (c *Clock) WaitFor(ctx context.Context, t time.Time) error {
	for {
		c.mu.Lock()
		changed := c.changed
		ok := slices.ContainsFunc(c.timers, func(tm timer) bool { return tm.at.Equal(t) })
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notify wakes the goroutines in BlockUntil and WaitFor. c.mu must be held.
func (c *Clock) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}
