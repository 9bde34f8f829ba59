package jobs

import (
	"testing"
	"time"
)

// FuzzValidate feeds random schedules, time zones and windows to Validate,
// and to what runs a valid job: it must never panic, and a job it accepts
// must be schedulable.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		"30 2 * * *", "*/15 * * * *", "@daily", "@every 1h", "@every -5s", "TZ=UTC", "TZ=",
		"CRON_TZ=Europe/Berlin 0 2 * * *", "0 0 30 2 *", "1-5/0 * * * *", "*/99999999999999999999 * * * *",
		"? ? ? ? ?", "0 0 * * 7", "L W # * *", "\x00", "@every 2540400h",
	} {
		f.Add(s, "Europe/Berlin", "22:00", int64(8*time.Hour), int64(1767225600))
	}
	f.Add("0 2 * * *", "../../etc/passwd", "24:60", int64(-1), int64(0))
	f.Add("0 2 * * *", "Local", "", int64(0), int64(-62135596800))
	f.Fuzz(func(t *testing.T, schedule, zone, start string, window, at int64) {
		j := testJob("fuzz")
		j.Schedule, j.TimeZone = schedule, zone
		j.Window = Window{Start: start, Duration: time.Duration(window)}
		if err := j.Validate(); err != nil {
			return
		}
		from := time.Unix(at, 0)
		next, err := j.Next(from)
		if err != nil {
			t.Fatalf("valid job: Next: %v", err)
		}
		if !next.IsZero() && !next.After(from) {
			t.Fatalf("Next(%v) = %v, not later", from, next)
		}
		loc, err := j.Location()
		if err != nil {
			t.Fatalf("valid job: Location: %v", err)
		}
		if closes, ok := j.Window.closes(from, loc); ok && !closes.IsZero() && !closes.After(from) {
			t.Fatalf("window %v containing %v closes at %v", j.Window, from, closes)
		}
	})
}
