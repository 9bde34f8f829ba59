package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilesCommands backs up a lab VM and restores its guest's files with
// files volumes, ls and get: every file's SHA-256 matches what the lab
// wrote into the guest's ext4.
func TestFilesCommands(t *testing.T) {
	r := newJobsRig(t)
	vc := []string{"--vcenter", r.url, "--username", r.lab.Username(), "--password-env", jobsVCPasswordEnv, "--thumbprint", r.lab.Thumbprint()}
	var backup struct {
		Point string `json:"point"`
	}
	out := cli(t, append([]string{"backup", "vm", "--store", r.store, "--vm", "vm01", "--json"}, vc...)...)
	if err := json.Unmarshal([]byte(out), &backup); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	point := backup.Point[:12]

	var vols []volumeOut
	if err := json.Unmarshal([]byte(cli(t, "files", "volumes", "--store", r.store, point, "--json")), &vols); err != nil {
		t.Fatal(err)
	}
	var root string
	for _, v := range vols {
		if v.FSType == "ext4" {
			root = v.ID
		}
	}
	if root != "d0p1" {
		t.Fatalf("volumes %+v: want the guest's ext4 as d0p1", vols)
	}
	guest := r.lab.VMs()[0].Disks[0].Guest
	ls := cli(t, "files", "ls", "--store", r.store, point, "--volume", root)
	top := strings.SplitN(guest.Files[0].Path, "/", 2)[0]
	mustContain(t, "files ls", ls, top)

	to := t.TempDir()
	out = cli(t, "files", "get", "--store", r.store, point, "--volume", root, "/", "--to", to)
	mustContain(t, "files get", out, "0 failed")
	for _, f := range guest.Files {
		got := filepath.Join(to, filepath.FromSlash(f.Path))
		fh, err := os.Open(got)
		if err != nil {
			t.Error(err)
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
			t.Errorf("%s: restored file differs (%v)", f.Path, err)
		}
	}

	// One file again, into a directory that has it: never keeps the local copy.
	one := guest.Files[len(guest.Files)-1].Path
	local := filepath.Join(to, path.Base(one))
	if err := os.WriteFile(local, []byte("local"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "files", "get", "--store", r.store, point, "--volume", root, one, "--to", to, "--overwrite", "never")
	if b, _ := os.ReadFile(local); string(b) != "local" {
		t.Errorf("--overwrite never replaced the local file")
	}
	cli(t, "files", "get", "--store", r.store, point, "--volume", root, one, "--to", to, "--overwrite", "always")
	if b, _ := os.ReadFile(local); string(b) == "local" {
		t.Errorf("--overwrite always kept the local file")
	}
	mustContain(t, "unknown volume", cliErr(t, "files", "ls", "--store", r.store, point, "--volume", "d9p9"), "no volume", "d0p1")
}

// TestRestoreCommands restores a lab VM's point as a new VM and rehearses
// its latest point, through the command line.
func TestRestoreCommands(t *testing.T) {
	r := newJobsRig(t)
	vc := []string{"--vcenter", r.url, "--username", r.lab.Username(), "--password-env", jobsVCPasswordEnv, "--thumbprint", r.lab.Thumbprint()}
	var backup struct {
		Point string `json:"point"`
	}
	out := cli(t, append([]string{"backup", "vm", "--store", r.store, "--vm", "vm02", "--json"}, vc...)...)
	if err := json.Unmarshal([]byte(out), &backup); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	out = cli(t, append([]string{"restore", "vm", "--store", r.store, backup.Point[:12], "--name", "vm02-copy", "--folder", "/DC0/vm/test"}, vc...)...)
	mustContain(t, "restore vm", out, "to vm02-copy", "disk 0")
	want, err := r.lab.Disk("vm02", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.lab.Disk("vm02-copy", 0)
	if err != nil {
		t.Fatal(err)
	}
	if sumOf(t, want) != sumOf(t, got) {
		t.Error("the restored VM's disk differs from the original's")
	}
	out = cli(t, append([]string{"restore", "rehearse", "--store", r.store, "vm02", "--timeout", "1m"}, vc...)...)
	mustContain(t, "restore rehearse", out, "passed")
	mustContain(t, "restore over a running VM",
		cliErr(t, append([]string{"restore", "vm", "--store", r.store, backup.Point[:12], "--over-original"}, vc...)...), "powered on")
}

func sumOf(t *testing.T, r interface {
	io.ReaderAt
	Size() int64
}) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, r.Size())); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
