package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// median returns the median of d, which must not be empty.
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// splitBulwark returns the Bulwark results, if any, and the others.
func splitBulwark(tools []*toolResults) (base *toolResults, others []*toolResults) {
	for _, t := range tools {
		if t.IsBulwark && base == nil {
			base = t
			continue
		}
		others = append(others, t)
	}
	return base, others
}

// phase names one timed phase of a comparison.
type phase struct {
	Label string
	Of    func(*toolRun) measurement
}

var comparePhases = []phase{
	{"Full backup", func(r *toolRun) measurement { return r.Full.measurement }},
	{"Incremental backup", func(r *toolRun) measurement { return r.Incr.measurement }},
	{"Full restore", func(r *toolRun) measurement { return r.Restore }},
	{"Full restore, on disk", func(r *toolRun) measurement { return r.RestoreDurable }},
}

// markdown renders the comparison.
func (c *comparison) markdown() string {
	var b strings.Builder
	b.WriteString("## Bulwark vs restic vs borg\n\n")
	fmt.Fprintf(&b, "Machine: %s.\n", c.Machine)
	b.WriteString(describeImage(c.Image, c.Change))
	fmt.Fprintf(&b, "Runs: %d, each with fresh repositories and the tool order rotated by one.\n", c.Runs)
	fmt.Fprintf(&b, "Page cache: %s.\n\n", c.Caches)
	c.writeSummary(&b)
	b.WriteString("\n### Details\n\n")
	c.writeDetails(&b)
	c.writeNotes(&b)
	return b.String()
}

// writeSummary writes the main table: one row per phase and size, one
// column per tool and one per ratio against Bulwark.
func (c *comparison) writeSummary(b *strings.Builder) {
	size := c.Image.Size
	base, others := splitBulwark(c.Tools)
	t := table{Header: []string{""}}
	for _, r := range c.Tools {
		t.Header = append(t.Header, r.Name)
	}
	if base != nil {
		for _, o := range others {
			t.Header = append(t.Header, "Bulwark vs "+o.Name)
		}
	}
	addRow := func(label string, cell func(*toolResults) string, value func(*toolResults) float64) {
		row := []string{label}
		for _, r := range c.Tools {
			row = append(row, cell(r))
		}
		if base != nil {
			for _, o := range others {
				row = append(row, ratio(value(o), value(base)))
			}
		}
		t.add(row...)
	}
	for _, p := range comparePhases {
		med := func(r *toolResults) time.Duration { return median(r.wall(p.Of)) }
		addRow(p.Label,
			func(r *toolResults) string { return fmt.Sprintf("%s (%s)", seconds(med(r)), throughput(size, med(r))) },
			func(r *toolResults) float64 { return med(r).Seconds() })
	}
	addRow("Store size after both points",
		func(r *toolResults) string {
			s := r.last().Size
			if s.WithoutIndex >= 0 {
				return fmt.Sprintf("%s (%s without index/)", formatBytes(s.Total), formatBytes(s.WithoutIndex))
			}
			return formatBytes(s.Total)
		},
		func(r *toolResults) float64 { return float64(r.last().Size.Total) })
	addRow("Peak RSS",
		func(r *toolResults) string { return formatBytes(r.peakRSS()) },
		func(r *toolResults) float64 { return float64(r.peakRSS()) })
	t.write(b)

	if c.Runs == 1 {
		b.WriteString("\nTimes are wall clock; ")
	} else {
		fmt.Fprintf(b, "\nTimes are wall-clock medians of %d runs; ", c.Runs)
	}
	b.WriteString("MB/s is the image size (10⁶ bytes) divided by the time. ")
	if base != nil && len(others) > 0 {
		b.WriteString("\"Bulwark vs X\" is X ÷ Bulwark: above 1× means Bulwark is faster, smaller or leaner. ")
	}
	b.WriteString("Store size is the apparent size of all files in the repository (like du -sb) after the last run; " +
		"caches outside the repository are not counted. Peak RSS is the largest over all timed phases and runs.\n")
}

// writeDetails writes one row per tool and phase with the spread over the
// runs and what the tools said they read and stored.
func (c *comparison) writeDetails(b *strings.Builder) {
	size := c.Image.Size
	d := table{Header: []string{"Tool", "Phase", "Median", "Min", "Max", "MB/s (median)", "Peak RSS", "Read", "New", "Stored"}}
	for _, r := range c.Tools {
		last := r.last()
		none := backupResult{BytesRead: unknown, BytesNew: unknown, BytesStored: unknown}
		results := []backupResult{last.Full, last.Incr, none, none}
		for i, p := range comparePhases {
			walls := r.wall(p.Of)
			var rss int64
			for _, run := range r.Runs {
				rss = max(rss, p.Of(run).MaxRSS)
			}
			d.add(r.Name, strings.ToLower(p.Label), seconds(median(walls)), seconds(slices.Min(walls)), seconds(slices.Max(walls)),
				throughput(size, median(walls)), formatBytes(rss),
				bytesOrNone(results[i].BytesRead), bytesOrNone(results[i].BytesNew), bytesOrNone(results[i].BytesStored))
		}
	}
	d.write(b)
	b.WriteString("\nRead, New and Stored are what each tool reports for its last run: bytes of the image read, bytes not found " +
		"in the repository (before compression), bytes added to the repository (after compression, plus metadata where " +
		"the tool counts it). restic and borg read the image as a stream from stdin, holes included.\n\n")
}

// writeNotes writes Bulwark's own figures, the restore verification and the
// tool versions.
func (c *comparison) writeNotes(b *strings.Builder) {
	size := c.Image.Size
	for _, r := range c.Tools {
		if !r.IsBulwark {
			continue
		}
		last := r.last()
		fmt.Fprintf(b, "Bulwark incremental read %s of the %s image (%s) for %s of changed areas.\n",
			formatBytes(last.Incr.BytesRead), formatBytes(size), percent(last.Incr.BytesRead, size), formatBytes(c.Change.Bytes))
		if s := last.Stats; s != nil {
			fmt.Fprintf(b, "Bulwark stats after both points: stored_bytes %s, logical_bytes %s, %d chunks, %d packs.\n",
				formatBytes(s.StoredBytes), formatBytes(s.LogicalBytes), s.Chunks, s.Packs)
		}
	}
	var checks []string
	for _, r := range c.Tools {
		state := "bit-exact"
		if n := r.unverified(c.ImageSHA); n > 0 {
			state = fmt.Sprintf("**NOT BIT-EXACT in %d of %d runs**", n, len(r.Runs))
		}
		checks = append(checks, r.Name+" "+state)
	}
	fmt.Fprintf(b, "Every restore was checked against the SHA-256 of the changed image (%s): %s.\n\n",
		c.ImageSHA, strings.Join(checks, ", "))

	b.WriteString("Versions and settings:\n\n")
	for _, r := range c.Tools {
		fmt.Fprintf(b, "- %s: %s; %s\n", r.Name, r.Version, r.Settings)
	}
}
