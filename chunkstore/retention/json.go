package retention

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// policyJSON is the wire form of a Policy: the location is a zone name and
// the span is written as ParseSpan reads it.
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

// MarshalJSON writes p as {"daily": 7, "within": "30d", "location":
// "Europe/Berlin"}, leaving out the rules that are off.
func (p Policy) MarshalJSON() ([]byte, error) {
	v := policyJSON{
		Last: p.Last, Hourly: p.Hourly, Daily: p.Daily, Weekly: p.Weekly,
		Monthly: p.Monthly, Quarterly: p.Quarterly, Yearly: p.Yearly,
	}
	if p.Within != (Span{}) {
		v.Within = p.Within.String()
	}
	if p.Location != nil {
		v.Location = p.Location.String()
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Policy) UnmarshalJSON(b []byte) error {
	// Unknown rules are errors, not rules silently off: a policy that
	// keeps less than its author meant deletes points.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v policyJSON
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("retention policy: %w", err)
	}
	out := Policy{
		Last: v.Last, Hourly: v.Hourly, Daily: v.Daily, Weekly: v.Weekly,
		Monthly: v.Monthly, Quarterly: v.Quarterly, Yearly: v.Yearly,
	}
	if v.Within != "" {
		s, err := ParseSpan(v.Within)
		if err != nil {
			return fmt.Errorf("retention within: %w", err)
		}
		out.Within = s
	}
	if v.Location != "" {
		loc, err := time.LoadLocation(v.Location)
		if err != nil {
			return fmt.Errorf("retention location: unknown time zone %q", v.Location)
		}
		out.Location = loc
	}
	*p = out
	return nil
}
