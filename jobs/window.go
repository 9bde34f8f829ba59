package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// maxWindow is the longest window: a longer one would overlap the next
// day's, and then which of them governs a run would be ambiguous.
const maxWindow = 24 * time.Hour

// IsZero reports whether w is the always-open window.
func (w Window) IsZero() bool { return w == Window{} }

// String describes w as in "22:00 for 8h0m0s".
func (w Window) String() string {
	if w.IsZero() {
		return "always open"
	}
	return fmt.Sprintf("%s for %v", w.Start, w.Duration)
}

func (w Window) validate() error {
	if w.IsZero() {
		return nil
	}
	if _, _, err := parseClock(w.Start); err != nil {
		return fmt.Errorf("invalid window start: %w", err)
	}
	if w.Duration <= 0 || w.Duration > maxWindow {
		return fmt.Errorf("invalid window duration %v: want more than 0 and at most %v", w.Duration, maxWindow)
	}
	return nil
}

// parseClock parses "HH:MM".
func parseClock(s string) (hour, minute int, err error) {
	digit := func(c byte) (int, bool) { return int(c - '0'), '0' <= c && c <= '9' }
	if len(s) == 5 && s[2] == ':' {
		h1, ok1 := digit(s[0])
		h2, ok2 := digit(s[1])
		m1, ok3 := digit(s[3])
		m2, ok4 := digit(s[4])
		hour, minute = h1*10+h2, m1*10+m2
		if ok1 && ok2 && ok3 && ok4 && hour < 24 && minute < 60 {
			return hour, minute, nil
		}
	}
	return 0, 0, fmt.Errorf("%q: want HH:MM from 00:00 to 23:59", s)
}

// closes returns when the window that contains t closes. It reports false
// if no window contains t, and the zero time with true if w is always open.
// w must be valid.
func (w Window) closes(t time.Time, loc *time.Location) (time.Time, bool) {
	if w.IsZero() {
		return time.Time{}, true
	}
	hour, minute, err := parseClock(w.Start)
	if err != nil {
		return time.Time{}, false
	}
	t = t.In(loc)
	// Windows are at most a day long, so only the ones opening on t's day
	// and on the day before can contain t.
	for _, back := range []int{0, -1} {
		d := t.AddDate(0, 0, back)
		open := time.Date(d.Year(), d.Month(), d.Day(), hour, minute, 0, 0, loc)
		shut := open.Add(w.Duration)
		if !t.Before(open) && t.Before(shut) {
			return shut, true
		}
	}
	return time.Time{}, false
}

// windowJSON is the wire form of a Window, with the duration written as
// Go writes it ("8h0m0s"), not in nanoseconds.
type windowJSON struct {
	Start    string `json:"start,omitempty"`
	Duration string `json:"duration,omitempty"`
}

// MarshalJSON writes w as {"start": "22:00", "duration": "8h0m0s"}; the
// always-open window is {}.
func (w Window) MarshalJSON() ([]byte, error) {
	var v windowJSON
	if !w.IsZero() {
		v = windowJSON{Start: w.Start, Duration: w.Duration.String()}
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (w *Window) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v windowJSON
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("window: %w", err)
	}
	var d time.Duration
	if v.Duration != "" {
		var err error
		if d, err = time.ParseDuration(v.Duration); err != nil {
			return fmt.Errorf("window duration: %w", err)
		}
	}
	*w = Window{Start: v.Start, Duration: d}
	return nil
}
