package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

func TestValidateAcceptsGoodJobs(t *testing.T) {
	for _, mod := range []func(*Job){
		func(j *Job) {},
		func(j *Job) { j.Schedule = "@daily" },
		func(j *Job) { j.Schedule = "@every 6h" },
		func(j *Job) { j.Schedule = "*/15 8-18 * * MON-FRI" },
		func(j *Job) { j.TimeZone = "Europe/Berlin" },
		func(j *Job) { j.Window = Window{Start: "22:00", Duration: 8 * time.Hour} },
		func(j *Job) { j.Window = Window{Start: "00:00", Duration: 24 * time.Hour} },
		func(j *Job) { j.Retention = retention.Policy{} }, // keeps everything
		func(j *Job) { j.Name = "A.b_c-9" },
		func(j *Job) { j.Name = strings.Repeat("x", 64) },
		func(j *Job) { j.Selection = Selection{Clusters: []string{"domain-c7"}} },
	} {
		j := testJob("nightly")
		mod(&j)
		if err := j.Validate(); err != nil {
			t.Errorf("%+v: %v", j, err)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Job)
		want string // every part must be in the message
	}{
		{func(j *Job) { j.Name = "" }, "invalid job name: empty"},
		{func(j *Job) { j.Name = "a/b" }, `invalid job name "a/b": '/' is not allowed`},
		{func(j *Job) { j.Name = `a\b` }, `'\\' is not allowed`},
		{func(j *Job) { j.Name = "nächtlich" }, `'ä' is not allowed`},
		{func(j *Job) { j.Name = ".." }, `invalid job name ".."`},
		{func(j *Job) { j.Name = strings.Repeat("x", 65) }, "longer than 64 characters"},
		{func(j *Job) { j.Schedule = "" }, `job nightly: invalid schedule "": empty`},
		{func(j *Job) { j.Schedule = "61 * * * *" }, `job nightly: invalid schedule "61 * * * *": end of range (61) above maximum (59)`},
		{func(j *Job) { j.Schedule = "0 2 * *" }, `invalid schedule "0 2 * *": expected exactly 5 fields`},
		{func(j *Job) { j.Schedule = "0 0 2 * * *" }, `invalid schedule "0 0 2 * * *"`},
		{func(j *Job) { j.Schedule = "@fortnightly" }, `invalid schedule "@fortnightly"`},
		{func(j *Job) { j.Schedule = "@every 10s" }, "shorter than 1m0s"},
		{func(j *Job) { j.Schedule = "0 0 30 2 *" }, `invalid schedule "0 0 30 2 *": never fires`},
		{func(j *Job) { j.Schedule = "TZ=UTC" }, "set the job's time zone instead"},
		{func(j *Job) { j.Schedule = "CRON_TZ=Europe/Berlin 0 2 * * *" }, "set the job's time zone instead"},
		{func(j *Job) { j.TimeZone = "Mars/Olympus" }, `job nightly: unknown time zone "Mars/Olympus"`},
		{func(j *Job) { j.Window = Window{Start: "25:00", Duration: time.Hour} }, `invalid window start: "25:00": want HH:MM`},
		{func(j *Job) { j.Window = Window{Start: "9:00", Duration: time.Hour} }, `"9:00": want HH:MM`},
		{func(j *Job) { j.Window = Window{Start: "22:00"} }, "invalid window duration 0s"},
		{func(j *Job) { j.Window = Window{Start: "22:00", Duration: 25 * time.Hour} }, "invalid window duration 25h0m0s"},
		{func(j *Job) { j.Window = Window{Duration: time.Hour} }, `invalid window start: ""`},
		{func(j *Job) { j.Retention = retention.Policy{Last: -2} }, "job nightly: retention: keep last -2"},
		{func(j *Job) { j.Selection = Selection{} }, "job nightly: empty selection"},
		{func(j *Job) { j.Selection = Selection{Exclude: []string{"vm-1"}} }, "empty selection"},
		{func(j *Job) { j.Selection = Selection{VMs: []string{""}} }, "selection: empty VM"},
		{func(j *Job) { j.Selection = Selection{Folders: []string{"DC0/vm"}} }, `folder "DC0/vm": want an inventory path`},
	} {
		j := testJob("nightly")
		c.mod(&j)
		err := j.Validate()
		if err == nil {
			t.Errorf("%+v: no error, want %q", j, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v:\n got %q\nwant %q", j, err, c.want)
		}
	}
}

func TestJobNext(t *testing.T) {
	j := testJob("nightly")
	j.Schedule, j.TimeZone = "30 2 * * *", "Europe/Berlin"
	got, err := j.Next(time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 11, 1, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Next = %v, want %v", got.UTC(), want)
	}
}

func TestJobJSONRoundTrip(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	within, err := retention.ParseSpan("1m2w")
	if err != nil {
		t.Fatal(err)
	}
	j := Job{
		Name:      "nightly",
		Selection: Selection{VMs: []string{"vm-1"}, Folders: []string{"/DC0/vm/prod"}, Clusters: []string{"c1"}, Exclude: []string{"db"}},
		Schedule:  "30 2 * * *",
		TimeZone:  "Europe/Berlin",
		Window:    Window{Start: "22:00", Duration: 8*time.Hour + 30*time.Minute},
		Retention: retention.Policy{Last: 3, Daily: 7, Yearly: -1, Within: within, Location: berlin},
		Enabled:   true,
		Created:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"window":{"start":"22:00","duration":"8h30m0s"}`,
		`"retention":{"last":3,"daily":7,"yearly":-1,"within":"1m14d","location":"Europe/Berlin"}`,
		`"time_zone":"Europe/Berlin"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s\nlacks %s", b, want)
		}
	}
	if strings.Contains(string(b), `"updated"`) {
		t.Errorf("JSON %s has a zero updated time", b)
	}
	var back Job
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Retention.Location == nil || back.Retention.Location.String() != "Europe/Berlin" {
		t.Errorf("location %v after round trip", back.Retention.Location)
	}
	back.Retention.Location, j.Retention.Location = nil, nil
	if b1, b2 := mustJSON(t, j), mustJSON(t, back); b1 != b2 {
		t.Errorf("round trip changed the job:\n%s\n%s", b1, b2)
	}

	var empty Job
	if err := json.Unmarshal([]byte(`{"name":"x","window":{},"retention":{}}`), &empty); err != nil {
		t.Fatal(err)
	}
	if !empty.Window.IsZero() || !empty.Retention.Empty() {
		t.Errorf("empty window and retention read as %+v", empty)
	}
	for _, bad := range []string{
		`{"retention":{"within":"1x"}}`,
		`{"retention":{"location":"Mars/Olympus"}}`,
		`{"window":{"start":"22:00","duration":"eight hours"}}`,
	} {
		if err := json.Unmarshal([]byte(bad), &empty); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWindowCloses(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	night := Window{Start: "22:00", Duration: 8 * time.Hour}
	for _, c := range []struct {
		w      Window
		t      string
		closes string // "" if no window contains t
	}{
		{night, "2026-01-10 22:00", "2026-01-11 06:00"},
		{night, "2026-01-10 23:59", "2026-01-11 06:00"},
		{night, "2026-01-11 05:59", "2026-01-11 06:00"},
		{night, "2026-01-11 06:00", ""},
		{night, "2026-01-11 21:59", ""},
		// Eight hours elapsed: on the night the clocks go forward the window
		// closes at 07:00 local time.
		{night, "2026-03-28 23:00", "2026-03-29 07:00"},
		{Window{Start: "01:00", Duration: 2 * time.Hour}, "2026-01-11 02:30", "2026-01-11 03:00"},
		{Window{Start: "01:00", Duration: 2 * time.Hour}, "2026-01-11 00:30", ""},
	} {
		got, ok := c.w.closes(at(c.t), berlin)
		switch {
		case c.closes == "" && ok:
			t.Errorf("%v at %s: closes %v, want outside", c.w, c.t, got)
		case c.closes != "" && (!ok || !got.Equal(at(c.closes))):
			t.Errorf("%v at %s: closes %v, %v, want %s", c.w, c.t, got, ok, c.closes)
		}
	}
	if got, ok := (Window{}).closes(at("2026-01-11 12:00"), berlin); !ok || !got.IsZero() {
		t.Errorf("zero window: %v, %v; want always open", got, ok)
	}
}

func TestSummarize(t *testing.T) {
	vm := func(results ...string) []VMRun {
		var v []VMRun
		for _, r := range results {
			v = append(v, VMRun{Result: r})
		}
		return v
	}
	for _, c := range []struct {
		vms  []VMRun
		want string
		why  string
	}{
		{vm(ResultSuccess, ResultSuccess), ResultSuccess, ""},
		{vm(ResultSuccess, ResultWarning), ResultWarning, ""},
		{vm(ResultSuccess, ResultFailed), ResultPartial, "1 of 2 VMs failed"},
		{vm(ResultWarning, ResultFailed), ResultPartial, "1 of 2 VMs failed"},
		{vm(ResultFailed, ResultFailed), ResultFailed, "2 of 2 VMs failed"},
		{vm(ResultSuccess, ResultDeferred), ResultPartial, "1 of 2 VMs deferred"},
		{vm(ResultDeferred, ResultFailed), ResultFailed, "1 of 2 VMs failed, 1 of 2 VMs deferred"},
		{nil, ResultFailed, "no VM selected"},
	} {
		got, why := summarize(c.vms)
		if got != c.want || !strings.Contains(why, c.why) || (c.why == "") != (why == "") {
			t.Errorf("summarize(%v) = %q, %q; want %q, %q", c.vms, got, why, c.want, c.why)
		}
	}
}
