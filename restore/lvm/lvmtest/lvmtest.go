// Package lvmtest makes LVM volume groups on loop devices for tests, with
// the real tools, without touching the host's LVM state: a private
// LVM_SYSTEM_DIR, no device-mapper activation, and a device filter that
// lets LVM see only the test's own loop devices.
package lvmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Env is a private LVM setup.
type Env struct {
	t       testing.TB
	sysDir  string
	devices []string         // loop devices attached
	images  map[string]image // loop device -> what it shows
	vgs     []string         // VGs made, removed at the end
}

// New returns an Env whose loop devices and VGs are removed when the test
// ends.
func New(t testing.TB) *Env {
	t.Helper()
	e := &Env{t: t, sysDir: t.TempDir(), images: map[string]image{}}
	t.Cleanup(e.cleanup)
	return e
}

func (e *Env) cleanup() {
	for _, vg := range e.vgs {
		_, _ = e.exec("vgremove", "-f", vg)
	}
	for _, dev := range e.devices {
		if out, err := exec.Command(tool(e.t, "losetup"), "-d", dev).CombinedOutput(); err != nil {
			e.t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	}
}

// tool finds a tool in the PATH or in /sbin and /usr/sbin, failing the
// test when it is not installed.
func tool(t testing.TB, name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s is not installed (.ci/run installs it)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Image makes a sparse image file of the given size and attaches it to a
// loop device, returning both.
func (e *Env) Image(size int64) (img, dev string) {
	e.t.Helper()
	img = filepath.Join(e.t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		e.t.Fatal(err)
	}
	f.Close()
	return img, e.Loop(img)
}

// image is the part of an image file a loop device shows.
type image struct {
	path   string
	offset int64
}

// Loop attaches an image to a loop device of 512-byte sectors.
func (e *Env) Loop(img string) string {
	e.t.Helper()
	return e.LoopRange(img, 0, 0)
}

// LoopRange attaches size bytes of an image from offset to a loop device,
// as a partition; size 0 runs to the end.
func (e *Env) LoopRange(img string, offset, size int64) string {
	e.t.Helper()
	args := []string{"-f", "--show", "-o", strconv.FormatInt(offset, 10)}
	if size > 0 {
		args = append(args, "--sizelimit", strconv.FormatInt(size, 10))
	}
	out, err := exec.Command(tool(e.t, "losetup"), append(args, img)...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("losetup %v %s: %v\n%s", args, img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	e.devices = append(e.devices, dev)
	e.images[dev] = image{img, offset}
	return dev
}

// config is the --config of every LVM command.
func (e *Env) config() string {
	var filter []string
	for _, d := range e.devices {
		filter = append(filter, strconv.Quote("a|^"+d+"$|"))
	}
	filter = append(filter, `"r|.*|"`)
	f := strings.Join(filter, ",")
	return fmt.Sprintf(`global{activation=0} devices{obtain_device_list_from_udev=0 hints="none" use_devicesfile=0 filter=[%s] global_filter=[%s]} backup{backup=0 archive=0}`, f, f)
}

func (e *Env) exec(cmd string, args ...string) ([]byte, error) {
	c := exec.Command(tool(e.t, "lvm"), append([]string{cmd, "--config", e.config()}, args...)...)
	c.Env = append(os.Environ(), "LVM_SYSTEM_DIR="+e.sysDir, "LVM_SUPPRESS_FD_WARNINGS=1", "LC_ALL=C")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("lvm %s %v: %v\n%s%s", cmd, args, err, out, stderr.Bytes())
	}
	return out, nil
}

// LVM runs an LVM command (pvcreate, vgcreate, lvcreate, ...) and returns
// its standard output.
func (e *Env) LVM(cmd string, args ...string) string {
	e.t.Helper()
	out, err := e.exec(cmd, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(out)
}

// VGCreate makes a VG of 1 MiB extents on the given PVs, removed when the
// test ends.
func (e *Env) VGCreate(vg string, pvs ...string) {
	e.t.Helper()
	e.LVM("vgcreate", append([]string{"-s", "1m", vg}, pvs...)...)
	e.vgs = append(e.vgs, vg)
}

// Report runs an LVM report command (pvs, lvs) with --reportformat json
// and byte units, and returns its rows.
func (e *Env) Report(cmd string, args ...string) []map[string]string {
	e.t.Helper()
	out := e.LVM(cmd, append([]string{"--reportformat", "json", "--units", "b", "--nosuffix"}, args...)...)
	var rep struct {
		Report []map[string][]map[string]string
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	var rows []map[string]string
	for _, r := range rep.Report {
		for _, v := range r {
			rows = append(rows, v...)
		}
	}
	for _, row := range rows {
		for k, v := range row {
			row[k] = strings.TrimSpace(v)
		}
	}
	return rows
}
