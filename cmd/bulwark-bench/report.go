package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machineInfo describes the machine a benchmark ran on.
type machineInfo struct {
	CPUs   int
	CPU    string
	Kernel string
	Memory int64
	Date   time.Time
	Go     string
}

func readMachineInfo() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), CPU: "unknown", Kernel: "unknown", Date: time.Now().UTC(), Go: runtime.Version()}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPU = v
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		if kib, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.Memory = kib << 10
		}
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file whose key is key.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

func (m machineInfo) String() string {
	return fmt.Sprintf("%d CPUs (%s), %s RAM, Linux %s, %s, %s",
		m.CPUs, m.CPU, formatBytes(m.Memory), m.Kernel, m.Go, m.Date.Format(time.RFC3339))
}

// table is a Markdown table. The first column is left-aligned, the others
// right-aligned.
type table struct {
	Header []string
	Rows   [][]string
}

func (t *table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

func (t *table) write(w io.Writer) {
	row := func(cells []string) {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	row(t.Header)
	sep := make([]string, len(t.Header))
	for i := range sep {
		sep[i] = "---:"
	}
	sep[0] = "---"
	row(sep)
	for _, r := range t.Rows {
		row(r)
	}
}

const none = "—"

// seconds formats a duration as seconds.
func seconds(d time.Duration) string {
	s := d.Seconds()
	switch {
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}

// throughput formats bytes per wall-clock time in MB/s (10⁶ bytes).
func throughput(bytes int64, d time.Duration) string {
	if d <= 0 {
		return none
	}
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/d.Seconds()/1e6)
}

// ratio formats other/base, or a dash when either is unknown.
func ratio(other, base float64) string {
	if base <= 0 || other <= 0 {
		return none
	}
	return fmt.Sprintf("%.2f×", other/base)
}

// bytesOrNone formats n, or a dash for unknown.
func bytesOrNone(n int64) string {
	if n < 0 {
		return none
	}
	return formatBytes(n)
}

// percent formats part as a percentage of whole.
func percent(part, whole int64) string {
	if whole <= 0 || part < 0 {
		return none
	}
	return fmt.Sprintf("%.2f%%", 100*float64(part)/float64(whole))
}

// writeReport writes md to w and, if path is not empty, to the file path.
func writeReport(w io.Writer, path, md string) error {
	if _, err := io.WriteString(w, md); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if path == "" {
		return nil
	}
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// describeImage summarises the image and the change for a report.
func describeImage(img *diskImage, cs *changeSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Image: %s sparse GPT disk image, one ext4 partition at byte %d (%s, %d-byte blocks) "+
		"holding %d files, %s, copied from %s; built in %s.\n",
		formatBytes(img.Size), img.PartOffset, formatBytes(img.PartSize), img.BlockSize,
		len(img.Files), formatBytes(img.DataBytes), strings.Join(img.Sources, ", "), seconds(img.BuildTime))
	fmt.Fprintf(&b, "Change between the backups: %d files overwritten in place with pseudo-random bytes (seed %d), "+
		"%s in %d areas = %s of the file data, %s of the image.\n",
		cs.Files, cs.Seed, formatBytes(cs.Bytes), len(cs.Areas), percent(cs.Bytes, img.DataBytes), percent(cs.Bytes, img.Size))
	return b.String()
}
