package jobs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// scheduleParser reads the standard five fields and the descriptors
// (@daily, @every 6h, ...). It has no state, so sharing it is harmless.
var scheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// minEvery is the shortest "@every" interval accepted: the other schedules
// cannot fire more often than once a minute either, and a VM backup takes
// longer than that anyway.
const minEvery = time.Minute

// neverReference is where parseSchedule looks for a first firing. Any fixed
// time will do, as every satisfiable expression fires within four years.
var neverReference = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// parseSchedule parses a job's cron expression. The result's Next works in
// the location of the time it is given.
func parseSchedule(expr string) (s cron.Schedule, err error) {
	bad := func(why error) (cron.Schedule, error) {
		return nil, fmt.Errorf("invalid schedule %q: %w", expr, why)
	}
	spec := strings.TrimSpace(expr)
	switch {
	case spec == "":
		return bad(errors.New("empty"))
	case strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ="):
		// The job has a time zone of its own; two would disagree. (The
		// parser also panics on a TZ= without a following field.)
		return bad(errors.New("set the job's time zone instead of TZ= in the schedule"))
	}
	defer func() {
		// The parser has panicked on odd input before; a bad schedule must
		// be an error, never a crash of the appliance.
		if r := recover(); r != nil {
			s, err = bad(fmt.Errorf("unparsable: %v", r))
		}
	}()
	s, err = scheduleParser.Parse(spec)
	if err != nil {
		return bad(err)
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok && every.Delay < minEvery {
		return bad(fmt.Errorf("interval %v is shorter than %v", every.Delay, minEvery))
	}
	if s.Next(neverReference).IsZero() {
		return bad(errors.New("never fires"))
	}
	return s, nil
}
