package jobs

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// schedRig is a rig with a scheduler running on it.
type schedRig struct {
	*rig
	sched *Scheduler
	stop  func() error // stops the scheduler and returns what Run returned
}

func newSchedRig(t *testing.T, start time.Time, jobs ...Job) *schedRig {
	t.Helper()
	g := newRigAt(t, start, vmsOn(1), RunnerConfig{})
	for _, j := range jobs {
		if err := g.state.PutJob(j); err != nil {
			t.Fatal(err)
		}
	}
	s := NewScheduler(g.runner, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	return &schedRig{rig: g, sched: s, stop: stop}
}

// fireAt checks that the scheduler waits for exactly at, moves the clock
// there and waits for the run that it starts to end.
func (g *schedRig) fireAt(t *testing.T, ctx context.Context, at time.Time) Run {
	t.Helper()
	g.waitArmed(t, ctx, at)
	g.clock.Set(at)
	e := g.waitEvent(t, ctx, "run scheduled at "+at.String()+" ended", func(e Event) bool {
		return e.Kind == EventRunEnded && e.Run.Scheduled.Equal(at)
	})
	if e.Run.Trigger != TriggerSchedule || e.Run.Result != ResultSuccess {
		t.Errorf("run at %v: %s, %s", at, e.Run.Trigger, e.Run.Result)
	}
	return *e.Run
}

// waitArmed waits until the scheduler waits, and checks that it waits for
// at and nothing else.
func (g *schedRig) waitArmed(t *testing.T, ctx context.Context, at time.Time) {
	t.Helper()
	if err := g.clock.BlockUntil(ctx, 1); err != nil {
		t.Fatalf("scheduler never waited, want it to wait for %v", at.UTC())
	}
	if p := g.clock.Pending(); len(p) != 1 || !p[0].Equal(at) {
		t.Fatalf("scheduler waits for %v, want %v", p, at.UTC())
	}
}

func scheduled(t *testing.T, s *State, job string) []time.Time {
	t.Helper()
	runs, err := s.Runs(job, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ts []time.Time
	for _, r := range runs {
		ts = append(ts, r.Scheduled.UTC())
	}
	slices.Reverse(ts)
	return ts
}

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestSchedulerFiresOnTime(t *testing.T) {
	ctx := testContext(t)
	quarter := testJob("quarter")
	quarter.Schedule = "*/15 * * * *"
	off := testJob("off")
	off.Schedule, off.Enabled = "* * * * *", false
	g := newSchedRig(t, utc("2026-01-05 11:50"), quarter, off)

	want := []time.Time{utc("2026-01-05 12:00"), utc("2026-01-05 12:15"), utc("2026-01-05 12:30")}
	for _, at := range want {
		g.fireAt(t, ctx, at)
	}
	g.waitArmed(t, ctx, utc("2026-01-05 12:45"))
	if err := g.stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	if got := scheduled(t, g.state, "quarter"); !slices.Equal(got, want) {
		t.Errorf("runs scheduled at %v, want %v", got, want)
	}
	if got := scheduled(t, g.state, "off"); len(got) != 0 {
		t.Errorf("disabled job ran at %v", got)
	}
}

func TestSchedulerSkipsWhileRunning(t *testing.T) {
	ctx := testContext(t)
	job := testJob("quarter")
	job.Schedule = "*/15 * * * *"
	g := newSchedRig(t, utc("2026-01-05 11:50"), job)
	g.bak.gate = make(chan struct{})

	g.waitArmed(t, ctx, utc("2026-01-05 12:00"))
	g.clock.Set(utc("2026-01-05 12:00"))
	g.bak.waitStarted(t, ctx, 1)
	g.waitArmed(t, ctx, utc("2026-01-05 12:15"))
	g.clock.Set(utc("2026-01-05 12:15"))
	// Waiting for 12:30 means it has dealt with 12:15.
	g.waitArmed(t, ctx, utc("2026-01-05 12:30"))
	close(g.bak.gate)
	g.waitEvent(t, ctx, "first run ended", func(e Event) bool { return e.Kind == EventRunEnded })
	g.fireAt(t, ctx, utc("2026-01-05 12:30"))

	want := []time.Time{utc("2026-01-05 12:00"), utc("2026-01-05 12:30")}
	if got := scheduled(t, g.state, "quarter"); !slices.Equal(got, want) {
		t.Errorf("runs scheduled at %v, want %v", got, want)
	}
	if n := g.bak.callCount(); n != 2 {
		t.Errorf("%d backups, want 2", n)
	}
}

func TestSchedulerWakingLateStartsOnce(t *testing.T) {
	ctx := testContext(t)
	job := testJob("quarter")
	job.Schedule = "*/15 * * * *"
	g := newSchedRig(t, utc("2026-01-05 11:50"), job)

	g.waitArmed(t, ctx, utc("2026-01-05 12:00"))
	g.clock.Set(utc("2026-01-05 12:50")) // 12:00, 12:15, 12:30 and 12:45 are due
	g.waitArmed(t, ctx, utc("2026-01-05 13:00"))
	g.waitEvent(t, ctx, "run ended", func(e Event) bool { return e.Kind == EventRunEnded })
	if got, want := scheduled(t, g.state, "quarter"), []time.Time{utc("2026-01-05 12:45")}; !slices.Equal(got, want) {
		t.Errorf("runs scheduled at %v, want %v", got, want)
	}
}

func TestSchedulerTimeZones(t *testing.T) {
	for _, c := range []struct {
		name     string
		schedule string
		zone     string
		from     time.Time
		want     []time.Time
	}{
		// robfig/cron skips a time the clocks jump over, so 02:00 is
		// skipped on 2026-03-08 in New York and 02:30 on 2026-03-29 in
		// Berlin, and fires at both of the times the clocks repeat.
		{"New York spring", "0 2 * * *", "America/New_York", utc("2026-03-06 12:00"),
			[]time.Time{utc("2026-03-07 07:00"), utc("2026-03-09 06:00"), utc("2026-03-10 06:00")}},
		{"New York autumn", "0 2 * * *", "America/New_York", utc("2026-10-30 12:00"),
			[]time.Time{utc("2026-10-31 06:00"), utc("2026-11-01 07:00"), utc("2026-11-02 07:00")}},
		{"Berlin spring", "30 2 * * *", "Europe/Berlin", utc("2026-03-27 12:00"),
			[]time.Time{utc("2026-03-28 01:30"), utc("2026-03-30 00:30"), utc("2026-03-31 00:30")}},
		{"Berlin autumn", "30 2 * * *", "Europe/Berlin", utc("2026-10-23 12:00"),
			[]time.Time{utc("2026-10-24 00:30"), utc("2026-10-25 00:30"), utc("2026-10-25 01:30"), utc("2026-10-26 01:30")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := testContext(t)
			loc, err := time.LoadLocation(c.zone)
			if err != nil {
				t.Fatal(err)
			}
			schedule, err := cron.ParseStandard(c.schedule)
			if err != nil {
				t.Fatal(err)
			}
			var next []time.Time
			for at := c.from.In(loc); len(next) < len(c.want); {
				at = schedule.Next(at)
				next = append(next, at.UTC())
			}
			if !slices.Equal(next, c.want) {
				t.Fatalf("robfig/cron's Next gives %v, the test expects %v", next, c.want)
			}

			job := testJob("nightly")
			job.Schedule, job.TimeZone = c.schedule, c.zone
			g := newSchedRig(t, c.from, job)
			for _, at := range c.want {
				g.fireAt(t, ctx, at)
			}
			if got := scheduled(t, g.state, "nightly"); !slices.Equal(got, c.want) {
				t.Errorf("runs scheduled at %v, want %v", got, c.want)
			}
		})
	}
}

func TestSchedulerReload(t *testing.T) {
	ctx := testContext(t)
	daily := testJob("daily")
	daily.Schedule = "0 0 * * *"
	g := newSchedRig(t, utc("2026-01-05 11:50"), daily)
	// Once it waits for midnight, the scheduler is idle.
	g.waitArmed(t, ctx, utc("2026-01-06 00:00"))

	// From here on the timers it no longer waits for stay pending, so the
	// tests look for the one they expect among them.
	waitFor := func(at time.Time) {
		t.Helper()
		if err := g.clock.WaitFor(ctx, at); err != nil {
			t.Fatalf("scheduler never waited for %v; pending: %v", at, g.clock.Pending())
		}
	}
	hourly := testJob("hourly")
	hourly.Schedule = "0 * * * *"
	if err := g.state.PutJob(hourly); err != nil {
		t.Fatal(err)
	}
	g.sched.Reload()
	waitFor(utc("2026-01-05 12:00"))
	g.clock.Set(utc("2026-01-05 12:00"))
	g.waitEvent(t, ctx, "run at 12:00", func(e Event) bool {
		return e.Kind == EventRunEnded && e.Run.Scheduled.Equal(utc("2026-01-05 12:00"))
	})
	waitFor(utc("2026-01-05 13:00"))

	// A new schedule counts from the time of the change.
	hourly.Schedule = "30 * * * *"
	if err := g.state.PutJob(hourly); err != nil {
		t.Fatal(err)
	}
	g.sched.Reload()
	waitFor(utc("2026-01-05 12:30"))
	g.clock.Set(utc("2026-01-05 12:30"))
	g.waitEvent(t, ctx, "run at 12:30", func(e Event) bool {
		return e.Kind == EventRunEnded && e.Run.Scheduled.Equal(utc("2026-01-05 12:30"))
	})
	if got := scheduled(t, g.state, "hourly"); !slices.Equal(got, []time.Time{utc("2026-01-05 12:00"), utc("2026-01-05 12:30")}) {
		t.Errorf("runs scheduled at %v", got)
	}
}

func TestSchedulerStopCancelsRuns(t *testing.T) {
	ctx := testContext(t)
	job := testJob("quarter")
	job.Schedule = "*/15 * * * *"
	g := newSchedRig(t, utc("2026-01-05 11:50"), job)
	g.bak.gate = make(chan struct{}) // never opened
	g.waitArmed(t, ctx, utc("2026-01-05 12:00"))
	g.clock.Set(utc("2026-01-05 12:00"))
	g.bak.waitStarted(t, ctx, 1)

	g.stop()
	// Run has returned, so the run has ended and is recorded.
	runs, err := g.state.Runs("quarter", 0)
	if err != nil || len(runs) != 1 || runs[0].Result != ResultCancelled {
		t.Errorf("runs after stopping: %+v, %v", runs, err)
	}
}
