package jobs

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// retryDelay is how long the scheduler waits after failing to read the
// jobs before it tries again.
const retryDelay = time.Minute

// A Scheduler starts the enabled jobs of a Runner's State on their
// schedules, in their time zones, taking time from the Runner's Clock.
//
// It reads the jobs from the State each time it wakes up. Call Reload after
// changing jobs, or it sees the change only when it next wakes to start a
// run. A job keeps its next firing time across reloads unless its schedule
// or time zone changed, in which case it is counted again from the time of
// the change.
type Scheduler struct {
	runner *Runner
	log    *slog.Logger
	reload chan struct{}
}

// NewScheduler returns a scheduler that starts runs on r. A nil log
// discards.
func NewScheduler(r *Runner, log *slog.Logger) *Scheduler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{runner: r, log: log, reload: make(chan struct{}, 1)}
}

// Reload makes Run read the jobs again now. It does not block.
func (s *Scheduler) Reload() {
	select {
	case s.reload <- struct{}{}:
	default: // a reload is pending already
	}
}

// A plan is when a job fires next.
type plan struct {
	job      Job
	schedule cron.Schedule
	next     time.Time // in the job's location; zero if it never fires again
}

// Run starts the jobs on their schedules until ctx ends. The runs it starts
// belong to ctx: when ctx ends they are cancelled, and Run returns ctx's
// error once they have ended. Run must not be called again before it
// returns.
//
// A job due while its previous run is still running is skipped for that
// time, not started twice. If the scheduler wakes up late (the host was
// suspended, the clock was stepped) and a job was due more than once, it
// is started once, for the last time it was due.
func (s *Scheduler) Run(ctx context.Context) error {
	var runs sync.WaitGroup
	defer runs.Wait()
	plans := make(map[string]*plan)
	clock := s.runner.clock
	for {
		now := clock.Now()
		var wake <-chan time.Time
		jobs, err := s.runner.state.Jobs()
		if err != nil {
			s.log.Error("cannot read the jobs; trying again", "err", err, "in", retryDelay)
			wake = clock.After(retryDelay)
		} else {
			s.update(plans, jobs, now)
			s.fire(ctx, &runs, plans, now)
			if next := earliest(plans); !next.IsZero() {
				wake = clock.After(next.Sub(now))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-s.reload:
		}
	}
}

// update makes plans hold a plan for each enabled job.
func (s *Scheduler) update(plans map[string]*plan, jobs []Job, now time.Time) {
	enabled := make(map[string]bool)
	for _, j := range jobs {
		if !j.Enabled {
			continue
		}
		p := plans[j.Name]
		if p == nil || p.job.Schedule != j.Schedule || p.job.TimeZone != j.TimeZone {
			schedule, err := parseSchedule(j.Schedule)
			if err != nil {
				s.log.Error("job not scheduled", "job", j.Name, "err", err)
				continue
			}
			loc, err := loadLocation(j.TimeZone)
			if err != nil {
				s.log.Error("job not scheduled", "job", j.Name, "err", err)
				continue
			}
			p = &plan{schedule: schedule, next: schedule.Next(now.In(loc))}
			plans[j.Name] = p
			s.log.Debug("job scheduled", "job", j.Name, "schedule", j.Schedule, "next", p.next)
		}
		p.job = j
		enabled[j.Name] = true
	}
	for name := range plans {
		if !enabled[name] {
			delete(plans, name)
		}
	}
}

// fire starts the jobs that are due at now.
func (s *Scheduler) fire(ctx context.Context, runs *sync.WaitGroup, plans map[string]*plan, now time.Time) {
	names := make([]string, 0, len(plans))
	for name := range plans {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := plans[name]
		if p.next.IsZero() || p.next.After(now) {
			continue
		}
		due, missed := p.next, 0
		for {
			n := p.schedule.Next(due)
			if n.IsZero() || n.After(now) {
				break
			}
			due, missed = n, missed+1
		}
		if missed > 0 {
			s.log.Warn("scheduler woke up late; starting the job once for the last time it was due",
				"job", name, "missed", missed, "due", due)
		}
		p.next = p.schedule.Next(due)

		e, err := s.runner.Start(ctx, p.job, TriggerSchedule, due)
		switch {
		case errors.Is(err, ErrAlreadyRunning):
			s.log.Warn("scheduled run skipped: the previous run is still running", "job", name, "scheduled", due)
		case err != nil:
			s.log.Error("cannot start a scheduled run", "job", name, "scheduled", due, "err", err)
		default:
			runs.Go(func() { <-e.Done() })
		}
	}
}

// earliest returns the first time a plan fires, or zero if none will.
func earliest(plans map[string]*plan) time.Time {
	var t time.Time
	for _, p := range plans {
		if !p.next.IsZero() && (t.IsZero() || p.next.Before(t)) {
			t = p.next
		}
	}
	return t
}
