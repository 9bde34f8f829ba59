package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// cli runs the bulwark command line in-process and returns its stdout.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("bulwark %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// cliErr runs a command that must fail and returns its error output.
func cliErr(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, strings.NewReader(""), &out, &errb); code == 0 {
		t.Fatalf("bulwark %s succeeded, want failure; output %s", strings.Join(args, " "), out.String())
	}
	return errb.String()
}

// tool finds a system tool; the tests need it and .ci/run installs it.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: install it (see .ci/run)", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// makeGPTExt4 builds a GPT disk image of size bytes whose one partition
// holds an ext4 filesystem made by mke2fs -d from src.
func makeGPTExt4(t *testing.T, img, src string, size int64) {
	t.Helper()
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sh(t, tool(t, "sgdisk"), "-n", "1:2048:0", "-t", "1:8300", img)
	const start = 2048 * 512
	// The partition ends 34 sectors before the disk's end (the backup GPT).
	fsKiB := (size - start - 34*512) / 1024
	sh(t, tool(t, "mke2fs"), "-q", "-F", "-t", "ext4", "-d", src, "-E", fmt.Sprintf("offset=%d", start), img, fmt.Sprintf("%dk", fsKiB))
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestImageRoundTripGPTExt4(t *testing.T) {
	t.Setenv("BULWARK_PASSWORD", "test password")
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	img := filepath.Join(dir, "disk.img")
	src := filepath.Join(dir, "files")
	// Real files: a slice of the Go tree, with a symlink and a hard link.
	sh(t, "cp", "-a", filepath.Join(goRoot(t), "src", "crypto"), src)
	sh(t, "ln", "-s", "crypto/sha256", filepath.Join(src, "link"))
	sh(t, "ln", filepath.Join(src, "sha256", "sha256.go"), filepath.Join(src, "hardlink.go"))
	makeGPTExt4(t, img, src, 256<<20+4096*3+512) // a size that is a multiple of nothing much

	cli(t, "store", "init", "--store", store)
	var sum backupSummary
	if err := json.Unmarshal([]byte(cli(t, "image", "backup", "--store", store, "--source", "vm1", "--json", img)), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.BytesRead > allocatedBytes(t, img) {
		t.Errorf("first backup read %d bytes, more than the image's %d allocated", sum.BytesRead, allocatedBytes(t, img))
	}
	out := filepath.Join(dir, "restored.img")
	cli(t, "image", "restore", "--store", store, sum.Point, out)
	if sha(t, out) != sha(t, img) {
		t.Fatal("restored image differs from the original")
	}
	if a, b := allocatedBytes(t, out), allocatedBytes(t, img); a > b+1<<20 {
		t.Errorf("restored image allocates %d bytes, the original %d: not sparse", a, b)
	}
	// fsck reads the restored filesystem as a real one.
	sh(t, tool(t, "e2fsck"), "-fn", fmt.Sprintf("%s?offset=%d", out, 2048*512))

	// Change a file's blocks in place, tell the backup exactly where.
	changed := filepath.Join(dir, "changed")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("changed!"), 4096)
	if _, err := f.WriteAt(junk, 100<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(changed, fmt.Appendf(nil, "%d %d\n", 100<<20, len(junk)), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(cli(t, "image", "backup", "--store", store, "--source", "vm1", "--parent", sum.Point, "--changed", changed, img)), "\n")
	p2 := lines[len(lines)-1]
	if len(p2) != 64 {
		t.Fatalf("last line %q is not a point ID", p2)
	}
	cli(t, "image", "restore", "--store", store, p2[:12], out)
	if sha(t, out) != sha(t, img) {
		t.Fatal("restored incremental differs from the changed image")
	}

	var points []struct {
		ID     string `json:"id"`
		Source string `json:"source"`
		Time   string `json:"time"`
	}
	if err := json.Unmarshal([]byte(cli(t, "points", "--store", store, "--json")), &points); err != nil {
		t.Fatal(err)
	}
	if len(points) != 2 || points[0].ID != sum.Point || points[1].ID != p2 || points[0].Source != "vm1" || points[0].Time == "" {
		t.Errorf("points: %+v", points)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(cli(t, "stats", "--store", store, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"logical_bytes", "stored_bytes", "dedup_ratio", "compression_ratio", "chunks", "packs"} {
		if _, ok := st[k]; !ok {
			t.Errorf("stats lack %q: %v", k, st)
		}
	}
}

func TestImageEmptyAndErrors(t *testing.T) {
	t.Setenv("BULWARK_PASSWORD", "test password")
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	empty := filepath.Join(dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, "store", "init", "--store", store)
	if msg := cliErr(t, "store", "init", "--store", store); !strings.Contains(msg, "already exists") {
		t.Errorf("second init: %q", msg)
	}
	lines := strings.Split(strings.TrimSpace(cli(t, "image", "backup", "--store", store, "--source", "e", empty)), "\n")
	out := filepath.Join(dir, "out.img")
	cli(t, "image", "restore", "--store", store, lines[len(lines)-1], out)
	if fi, err := os.Stat(out); err != nil || fi.Size() != 0 {
		t.Fatalf("restored empty image: %v, %v", fi, err)
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("0 10\n5 x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "backup", "--store", store, "--source", "e", filepath.Join(dir, "nope.img")}, "nope.img"},
		{[]string{"image", "backup", "--store", store, "--source", "e", "--changed", bad, empty}, "--changed needs --parent"},
		{[]string{"image", "backup", "--store", store, "--source", "e", "--parent", lines[len(lines)-1], "--changed", bad, empty}, "line 1"},
		{[]string{"image", "backup", "--store", store, "--source", "e", "--parent", "ffffffff", empty}, "no such point"},
		{[]string{"image", "restore", "--store", store, "0000", out}, "no such point"},
		{[]string{"points", "--store", filepath.Join(dir, "none")}, "no store there"},
	} {
		if msg := cliErr(t, c.args...); !strings.Contains(msg, c.want) {
			t.Errorf("bulwark %s: error %q does not mention %q", strings.Join(c.args, " "), msg, c.want)
		}
	}
	t.Setenv("BULWARK_PASSWORD", "wrong")
	if msg := cliErr(t, "points", "--store", store); !strings.Contains(msg, "wrong password") {
		t.Errorf("wrong password: %q", msg)
	}
}

func goRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestParentLatestIsPerSource(t *testing.T) {
	t.Setenv("BULWARK_PASSWORD", "test password")
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cli(t, "store", "init", "--store", store)
	backup := func(source string, content byte, args ...string) backupSummary {
		img := filepath.Join(dir, source+".img")
		if err := os.WriteFile(img, bytes.Repeat([]byte{content}, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		var sum backupSummary
		all := append([]string{"image", "backup", "--store", store, "--source", source, "--json"}, args...)
		if err := json.Unmarshal([]byte(cli(t, append(all, img)...)), &sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	a := backup("a", 1)
	backup("b", 2) // newer, of another source
	a2 := backup("a", 3, "--parent", "latest")
	if a2.Parent != a.Point {
		t.Errorf("--parent latest of source a chose %s, want a's point %s", a2.Parent, a.Point)
	}
	if msg := cliErr(t, "image", "backup", "--store", store, "--source", "c", "--parent", "latest", filepath.Join(dir, "a.img")); !strings.Contains(msg, `source "c"`) {
		t.Errorf("latest of a source without points: %q", msg)
	}
}
