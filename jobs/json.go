package jobs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
)

// policyJSON is the wire form of a retention.Policy, which has no JSON form
// of its own: the location is a zone name and the span is written as
// retention.ParseSpan reads it.
type policyJSON struct {
	Last      int    `json:"last,omitempty"`
	Hourly    int    `json:"hourly,omitempty"`
	Daily     int    `json:"daily,omitempty"`
	Weekly    int    `json:"weekly,omitempty"`
	Monthly   int    `json:"monthly,omitempty"`
	Quarterly int    `json:"quarterly,omitempty"`
	Yearly    int    `json:"yearly,omitempty"`
	Within    string `json:"within,omitempty"`
	Location  string `json:"location,omitempty"`
}

func encodePolicy(p retention.Policy) policyJSON {
	v := policyJSON{
		Last: p.Last, Hourly: p.Hourly, Daily: p.Daily, Weekly: p.Weekly,
		Monthly: p.Monthly, Quarterly: p.Quarterly, Yearly: p.Yearly,
	}
	if p.Within != (retention.Span{}) {
		v.Within = p.Within.String()
	}
	if p.Location != nil {
		v.Location = p.Location.String()
	}
	return v
}

func (v policyJSON) decode() (retention.Policy, error) {
	p := retention.Policy{
		Last: v.Last, Hourly: v.Hourly, Daily: v.Daily, Weekly: v.Weekly,
		Monthly: v.Monthly, Quarterly: v.Quarterly, Yearly: v.Yearly,
	}
	if v.Within != "" {
		s, err := retention.ParseSpan(v.Within)
		if err != nil {
			return p, fmt.Errorf("retention within: %w", err)
		}
		p.Within = s
	}
	if v.Location != "" {
		loc, err := time.LoadLocation(v.Location)
		if err != nil {
			return p, fmt.Errorf("retention location: unknown time zone %q", v.Location)
		}
		p.Location = loc
	}
	return p, nil
}

// jobFields has the fields of Job without its methods, so that the wire
// form below can embed it without recursing into MarshalJSON.
type jobFields Job

// jobJSON is the wire form of a Job. Its Retention, being shallower,
// replaces the one of the embedded jobFields.
type jobJSON struct {
	jobFields
	Retention policyJSON `json:"retention"`
}

// MarshalJSON writes j with its retention policy in a portable form: the
// location as a zone name and keep-within as a span such as "30d".
func (j Job) MarshalJSON() ([]byte, error) {
	return json.Marshal(jobJSON{jobFields: jobFields(j), Retention: encodePolicy(j.Retention)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (j *Job) UnmarshalJSON(b []byte) error {
	var v jobJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p, err := v.Retention.decode()
	if err != nil {
		return err
	}
	*j = Job(v.jobFields)
	j.Retention = p
	return nil
}
