package appliance_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"go/build"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/certs"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// flrFixture is a rig whose lab VMs have been backed up once, with a
// file-restore token for the first VM.
type flrFixture struct {
	rig          *applianceRig
	admin        *e2eClient
	vmA, vmB     lab.VMInfo
	pointA       api.PointView
	pointB       api.PointView
	biosA, biosB string
	token        string
}

func newFLRFixture(t *testing.T) *flrFixture {
	t.Helper()
	rig := newApplianceRig(t, &lab.Options{VMs: 2, Disks: 1, DiskSize: 64 << 20, FileBytes: 2 << 20})
	admin := newE2EClient(rig)
	admin.login(rig.cfg.AdminUser, adminPassword)
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/jobs", jobs.Job{Name: "all",
		Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily", Enabled: true}, nil)
	var started api.RunStarted
	admin.ok(http.StatusAccepted, http.MethodPost, api.Prefix+"/jobs/all/run", nil, &started)
	if run := admin.waitRun(started.RunID); run.Result != jobs.ResultSuccess {
		t.Fatalf("backup: %s: %s", run.Result, run.Error)
	}
	f := &flrFixture{rig: rig, admin: admin}
	vms := rig.lab.VMs()
	f.vmA, f.vmB = vms[0], vms[1]
	for _, p := range e2eListPoints(t, admin, "") {
		switch p.Source.VMName {
		case f.vmA.Name:
			f.pointA = p
		case f.vmB.Name:
			f.pointB = p
		}
	}
	if f.pointA.ID == "" || f.pointB.ID == "" {
		t.Fatalf("no points of %s and %s", f.vmA.Name, f.vmB.Name)
	}
	f.biosA, f.biosB = f.biosUUID(t, f.pointA.ID), f.biosUUID(t, f.pointB.ID)
	var created api.CreatedToken
	admin.ok(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", api.NewToken{Name: "flr",
		Role: auth.RoleFileRestore, VM: f.pointA.Source.Name, TTL: "1h"}, &created)
	f.token = created.Secret
	return f
}

// biosUUID reads config.uuid from a point's VM configuration.
func (f *flrFixture) biosUUID(t *testing.T, point string) string {
	t.Helper()
	var p api.PointView
	f.admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/points/"+point, nil, &p)
	var config struct {
		UUID string `json:"uuid"`
	}
	if err := json.Unmarshal(p.VMConfig, &config); err != nil || config.UUID == "" {
		t.Fatalf("point %s: no config.uuid in its VM configuration (%v)", point, err)
	}
	return config.UUID
}

// files returns the lab's list of the files of a VM's first disk.
func labFiles(t *testing.T, vm lab.VMInfo) map[string]lab.GuestFile {
	t.Helper()
	if len(vm.Disks) == 0 || vm.Disks[0].Guest == nil {
		t.Fatalf("lab VM %s has no guest files", vm.Name)
	}
	out := map[string]lab.GuestFile{}
	for _, f := range vm.Disks[0].Guest.Files {
		out[f.Path] = f
	}
	return out
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestFileLevelRestore browses, downloads, archives and searches a backed
// up VM's ext4 partition through the API, as its file-restore token and as
// an admin, and holds the token to its VM.
func TestFileLevelRestore(t *testing.T) {
	f := newFLRFixture(t)
	ctx := context.Background()
	flrHTTP := newE2EClient(f.rig).withToken(f.token)
	flr := f.rig.client().WithToken(f.token).Files()
	want := labFiles(t, f.vmA)

	// The token's VM is found by its BIOS UUID, in both byte orders.
	var vms []api.VMPoints
	flrHTTP.ok(http.StatusOK, http.MethodGet, api.Prefix+"/vms", nil, &vms)
	if len(vms) != 1 || vms[0].BIOSUUID != f.biosA || vms[0].Source.Name != f.pointA.Source.Name {
		t.Fatalf("the token's VMs: %+v, want one with BIOS UUID %s", vms, f.biosA)
	}
	for _, u := range []string{f.biosA, strings.ToUpper(f.biosA), swappedUUID(t, f.biosA)} {
		found, err := flr.VMs(ctx, u)
		if err != nil || len(found) != 1 || found[0].Latest != f.pointA.ID {
			t.Fatalf("VMs with BIOS UUID %s: %+v, %v", u, found, err)
		}
	}
	if found, err := flr.VMs(ctx, f.biosB); err != nil || len(found) != 0 {
		t.Fatalf("the token for %s finds %+v (%v) by the BIOS UUID of %s", f.vmA.Name, found, err, f.vmB.Name)
	}

	vols, err := flr.Volumes(ctx, f.pointA.ID)
	if err != nil {
		t.Fatal(err)
	}
	var vol fileapi.VolumeView
	for _, v := range vols {
		if v.Browsable {
			if vol.ID != "" {
				t.Fatalf("two browsable volumes: %+v", vols)
			}
			vol = v
		}
	}
	if vol.ID != "d0p1" || vol.Kind != "partition" || !strings.HasPrefix(vol.FSType, "ext") || vol.Ref != vol.ID {
		t.Fatalf("volumes: %+v, want the ext4 partition d0p1", vols)
	}

	root, entries, problems, err := flr.ListAll(ctx, f.pointA.ID, vol.ID, ".", false)
	if err != nil || len(problems) != 0 {
		t.Fatalf("list the root: %v %v", err, problems)
	}
	if root.Type != "dir" || root.Path != "." {
		t.Fatalf("the root: %+v", root)
	}
	names := map[string]fileapi.FileView{}
	for _, e := range entries {
		names[e.Name] = e
	}
	for _, n := range []string{"etc", "var", "Über", "My Documents"} {
		if e, ok := names[n]; !ok || e.Type != "dir" || e.UID == nil || e.Inode == 0 {
			t.Errorf("root entry %s: %+v", n, e)
		}
	}
	// Paging gives the same entries.
	page, err := flr.List(ctx, f.pointA.ID, vol.ID, ".", "", 2, false)
	if err != nil || len(page.Entries) != 2 || !page.More {
		t.Fatalf("first page of 2: %+v, %v", page, err)
	}
	page, err = flr.List(ctx, f.pointA.ID, vol.ID, ".", page.Entries[1].Name, 1000, false)
	if err != nil || len(page.Entries) != len(entries)-2 || page.More {
		t.Fatalf("the page after the first 2: %d entries (more %v), %v; want %d", len(page.Entries), page.More, err, len(entries)-2)
	}
	link, err := flr.Stat(ctx, f.pointA.ID, vol.ID, "var/lib/app/latest", false)
	if err != nil || link.Type != "symlink" || link.Target != "blob.bin" {
		t.Fatalf("the symlink: %+v, %v", link, err)
	}

	// Every file downloads whole with its SHA-256.
	for p, gf := range want {
		st, err := flr.Stat(ctx, f.pointA.ID, vol.ID, p, false)
		if err != nil || st.Type != "file" || st.Size != gf.Size || st.Mode&0o777 != 0o644 || st.Mtime.IsZero() {
			t.Fatalf("stat %s: %+v, %v", p, st, err)
		}
		rc, err := flr.Content(ctx, f.pointA.ID, vol.ID, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || sha256Hex(b) != gf.SHA256 {
			t.Fatalf("download %s: %d bytes, %v; SHA-256 differs or read failed", p, len(b), err)
		}
	}

	// A Range request reads part of a file.
	const blob = "var/lib/app/blob.bin"
	rc, err := flr.Content(ctx, f.pointA.ID, vol.ID, blob)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || len(whole) < 10000 {
		t.Fatalf("%s: %d bytes, %v", blob, len(whole), err)
	}
	part := make([]byte, 5000)
	if n, err := flr.ReadAt(ctx, f.pointA.ID, vol.ID, blob, part, 1234); err != nil || n != len(part) || !bytes.Equal(part, whole[1234:1234+5000]) {
		t.Fatalf("range of %s: %d bytes, %v, or different bytes", blob, n, err)
	}
	tail := make([]byte, 100)
	if n, err := flr.ReadAt(ctx, f.pointA.ID, vol.ID, blob, tail, int64(len(whole)-10)); err != io.EOF || n != 10 || !bytes.Equal(tail[:n], whole[len(whole)-10:]) {
		t.Fatalf("range over the end of %s: %d bytes, %v", blob, n, err)
	}

	// A folder as tar and as zip.
	checkArchive(t, flr, f.pointA.ID, vol.ID, "var/lib", "tar", want)
	checkArchive(t, flr, f.pointA.ID, vol.ID, "My Documents", "zip", want)

	// Search.
	var txt int
	for p := range want {
		if strings.HasSuffix(p, ".txt") {
			txt++
		}
	}
	res, err := flr.Search(ctx, f.pointA.ID, vol.ID, "", "*.TXT", 0)
	if err != nil || len(res.Matches) != txt || !res.Complete {
		t.Fatalf("search *.TXT: %d matches (%+v), %v; want %d", len(res.Matches), res, err, txt)
	}
	for _, m := range res.Matches {
		if gf, ok := want[m.Path]; !ok || m.Size != gf.Size {
			t.Errorf("search match %+v is not a lab file", m)
		}
	}
	res, err = flr.Search(ctx, f.pointA.ID, vol.ID, "Über", "naïve", 0)
	if err != nil || len(res.Matches) != 1 || res.Matches[0].Path != "Über/naïve.txt" {
		t.Fatalf("search naïve under Über: %+v, %v", res, err)
	}

	// Hostile parameters are refused.
	files := api.Prefix + "/points/" + f.pointA.ID + "/volumes/d0p1/"
	for _, p := range []string{"../etc", "etc/../..", "/etc", "etc//hosts", "etc/./hosts", "etc\x00hosts", "etc\nhosts"} {
		q := "?path=" + url.QueryEscape(p)
		for _, ep := range []string{"files", "content", "archive", "search"} {
			extra := ""
			if ep == "search" {
				extra = "&pattern=x"
			}
			flrHTTP.refused(http.StatusBadRequest, http.MethodGet, files+ep+q+extra, nil)
		}
	}
	flrHTTP.refused(http.StatusBadRequest, http.MethodGet, files+"search?pattern="+url.QueryEscape("a/b"), nil)
	flrHTTP.refused(http.StatusBadRequest, http.MethodGet, files+"archive?path=etc&format=rar", nil)
	flrHTTP.refused(http.StatusBadRequest, http.MethodGet, files+"content?path=etc", nil, "not a regular file")
	flrHTTP.refused(http.StatusNotFound, http.MethodGet, files+"files?path=no/such/file", nil)
	flrHTTP.refused(http.StatusNotFound, http.MethodGet, api.Prefix+"/points/"+f.pointA.ID+"/volumes/d0p9/files", nil)
	flrHTTP.refused(http.StatusBadRequest, http.MethodGet, api.Prefix+"/points/"+f.pointA.ID+"/volumes/d0p2/files", nil)
	flrHTTP.refused(http.StatusBadRequest, http.MethodGet, api.Prefix+"/points/"+f.pointA.ID+"/volumes/%2E%2E/files", nil)
	flrHTTP.refused(http.StatusBadRequest, http.MethodGet, api.Prefix+"/points/"+f.pointA.ID+"/volumes/d0p1%00/files", nil)

	// The token never reaches the other VM's point: every endpoint says
	// it is not there, as for a point that does not exist.
	other := api.Prefix + "/points/" + f.pointB.ID
	for _, p := range []string{"/volumes", "/volumes/d0p1/files?path=etc", "/volumes/d0p1/content?path=etc/hostname",
		"/volumes/d0p1/archive?path=etc", "/volumes/d0p1/search?pattern=host"} {
		flrHTTP.refused(http.StatusNotFound, http.MethodGet, other+p, nil)
		flrHTTP.refused(http.StatusNotFound, http.MethodGet, api.Prefix+"/points/"+strings.Repeat("0", 64)+p, nil)
	}
	if _, err := flr.Content(ctx, f.pointB.ID[:12], "d0p1", "etc/hostname"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("the token reads a file of another VM's point: %v", err)
	}

	// An admin browses every VM.
	adminFiles := f.rig.admin().Files()
	wantB := labFiles(t, f.vmB)
	rc, err = adminFiles.Content(ctx, f.pointB.ID, "d0p1", "etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || sha256Hex(b) != wantB["etc/hostname"].SHA256 {
		t.Fatalf("the admin's download of %s's etc/hostname: %v or a different SHA-256", f.vmB.Name, err)
	}

	// The downloads are in the audit log, with who made them.
	var audit []auth.AuditEntry
	f.admin.ok(http.StatusOK, http.MethodGet, api.Prefix+"/audit?limit=1000", nil, &audit)
	var byToken, archives, admins int
	for _, e := range audit {
		switch {
		case e.Action == "download file" && strings.Contains(e.Actor, "token") && strings.Contains(e.Target, f.pointA.ID+" d0p1:/"):
			byToken++
		case e.Action == "download archive" && e.Outcome == "ok":
			archives++
		case e.Action == "download file" && strings.Contains(e.Target, f.pointB.ID):
			admins++
		}
	}
	if byToken < len(want) || archives != 2 || admins != 1 {
		t.Fatalf("audit: %d file downloads by the token (want at least %d), %d archives (want 2), %d by the admin (want 1)",
			byToken, len(want), archives, admins)
	}
}

func isStatus(err error, status int) bool {
	var se *api.StatusError
	return errors.As(err, &se) && se.Status == status
}

// swappedUUID spells a UUID with its first three fields byte-swapped, as
// SMBIOS 2.6 stores it.
func swappedUUID(t *testing.T, u string) string {
	t.Helper()
	h := strings.ReplaceAll(u, "-", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		t.Fatalf("UUID %q", u)
	}
	b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	b[4], b[5] = b[5], b[4]
	b[6], b[7] = b[7], b[6]
	x := hex.EncodeToString(b)
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// checkArchive downloads dir as an archive and compares its files with
// the lab's, all of those under dir.
func checkArchive(t *testing.T, c *fileapi.Client, point, vol, dir, format string, want map[string]lab.GuestFile) {
	t.Helper()
	rc, err := c.Archive(context.Background(), point, vol, []string{dir}, format)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("%s of %s: %v", format, dir, err)
	}
	parent := path.Dir(dir)
	got := map[string]string{} // path in the volume -> SHA-256
	add := func(name string, r io.Reader) {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s of %s: %s: %v", format, dir, name, err)
		}
		got[path.Join(parent, name)] = sha256Hex(b)
	}
	switch format {
	case "tar":
		tr := tar.NewReader(bytes.NewReader(raw))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("tar of %s: %v", dir, err)
			}
			switch h.Typeflag {
			case tar.TypeReg:
				if h.ModTime.IsZero() || h.Mode&0o777 != 0o644 {
					t.Errorf("tar entry %s: mode %o, mtime %v", h.Name, h.Mode, h.ModTime)
				}
				add(h.Name, tr)
			case tar.TypeSymlink:
				if path.Base(h.Name) == "latest" && h.Linkname != "blob.bin" {
					t.Errorf("tar symlink %s -> %s", h.Name, h.Linkname)
				}
			}
		}
	case "zip":
		zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			t.Fatalf("zip of %s: %v", dir, err)
		}
		for _, zf := range zr.File {
			if zf.Mode().IsRegular() {
				r, err := zf.Open()
				if err != nil {
					t.Fatal(err)
				}
				add(zf.Name, r)
				r.Close()
			}
		}
	}
	n := 0
	for p, gf := range want {
		if !strings.HasPrefix(p, dir+"/") {
			continue
		}
		n++
		if got[p] != gf.SHA256 {
			t.Errorf("%s of %s: %s has SHA-256 %q, want %s", format, dir, p, got[p], gf.SHA256)
		}
	}
	if n == 0 || len(got) != n {
		t.Errorf("%s of %s: %d files, the lab has %d there", format, dir, len(got), n)
	}
}

// TestFLRClient runs bulwark-flr as a process inside "VM A" against the
// appliance: points, ls, find, restore to a directory and to the files'
// places with each overwrite policy, and a refusal for VM B's UUID.
func TestFLRClient(t *testing.T) {
	bin := buildFLR(t)
	f := newFLRFixture(t)
	want := labFiles(t, f.vmA)
	fp := certs.Fingerprint(f.rig.ap.Certificate().Certificate[0])
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(f.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flrRun := func(uuid string, args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		args = append([]string{"--appliance", f.rig.ap.URL(), "--fingerprint", fp, "--token-file", tokenFile, "--vm-uuid", uuid}, args...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "BULWARK_FLR_TOKEN=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		t.Logf("bulwark-flr %s:\n%s%s", strings.Join(args[8:], " "), stdout.String(), stderr.String())
		return stdout.String(), stderr.String(), err
	}
	run := func(args ...string) string {
		t.Helper()
		out, _, err := flrRun(f.biosA, args...)
		if err != nil {
			t.Fatalf("bulwark-flr %v: %v", args, err)
		}
		return out
	}

	if out := run("points"); !strings.Contains(out, f.pointA.ID) || strings.Contains(out, f.pointB.ID) {
		t.Fatalf("points: %s", out)
	}
	// The SMBIOS spelling of the UUID finds the VM too.
	if out, _, err := flrRun(swappedUUID(t, strings.ToUpper(f.biosA)), "points"); err != nil || !strings.Contains(out, f.pointA.ID) {
		t.Fatalf("points by the byte-swapped UUID: %v", err)
	}
	if out := run("volumes", "latest"); !strings.Contains(out, "d0p1") || !strings.Contains(out, "ext4") {
		t.Fatalf("volumes: %s", out)
	}
	if out := run("ls", f.pointA.ID[:12], "d0p1", "/etc"); !strings.Contains(out, "hostname") {
		t.Fatalf("ls /etc: %s", out)
	}
	if out := run("ls", "latest", "d0p1", "/var/lib/app"); !strings.Contains(out, "latest -> blob.bin") {
		t.Fatalf("ls /var/lib/app: %s", out)
	}
	found := strings.Split(strings.TrimSpace(run("find", "latest", "d0p1", "*.txt")), "\n")
	var txt int
	for p := range want {
		if strings.HasSuffix(p, ".txt") {
			txt++
		}
	}
	if len(found) != txt {
		t.Fatalf("find *.txt: %d paths, want %d: %v", len(found), txt, found)
	}

	// The whole volume into a directory: every file with its SHA-256,
	// mode and mtime.
	to := t.TempDir()
	run("restore", "latest", "d0p1", "/", "--to", to)
	flr := f.rig.client().WithToken(f.token).Files()
	for p, gf := range want {
		local := filepath.Join(to, filepath.FromSlash(p))
		b, err := os.ReadFile(local)
		if err != nil || sha256Hex(b) != gf.SHA256 {
			t.Fatalf("restored %s: %v or a different SHA-256", p, err)
		}
		st, err := flr.Stat(context.Background(), f.pointA.ID, "d0p1", p, false)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(local)
		if err != nil || fi.Mode() != fileapi.FileModeOf(st.Mode) || !fi.ModTime().Equal(st.Mtime) {
			t.Fatalf("restored %s: mode %v mtime %v, the point has %v %v", p, fi.Mode(), fi.ModTime(), fileapi.FileModeOf(st.Mode), st.Mtime)
		}
	}
	if target, err := os.Readlink(filepath.Join(to, "var", "lib", "app", "latest")); err != nil || target != "blob.bin" {
		t.Fatalf("restored symlink: %q, %v", target, err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(to, "*", ".bulwark-tmp-*")); len(leftovers) > 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}

	// To the files' places, under --mount, with each overwrite policy.
	mount := t.TempDir()
	hostname := filepath.Join(mount, "etc", "hostname")
	original := want["etc/hostname"].SHA256
	run("restore", "latest", "d0p1", "etc/hostname", "--mount", mount)
	if b, err := os.ReadFile(hostname); err != nil || sha256Hex(b) != original {
		t.Fatalf("restore to the place under --mount: %v", err)
	}
	local := []byte("changed in the guest\n")
	if err := os.WriteFile(hostname, local, 0o644); err != nil {
		t.Fatal(err)
	}
	expect := func(policy string, wantSum string) {
		t.Helper()
		run("restore", "latest", "d0p1", "etc/hostname", "--mount", mount, "--overwrite", policy)
		if b, err := os.ReadFile(hostname); err != nil || sha256Hex(b) != wantSum {
			t.Fatalf("--overwrite %s: %q, %v", policy, b, err)
		}
	}
	expect("never", sha256Hex(local))
	expect("if-newer", sha256Hex(local)) // the local file is newer
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(hostname, old, old); err != nil {
		t.Fatal(err)
	}
	expect("if-newer", original)
	if err := os.WriteFile(hostname, local, 0o644); err != nil {
		t.Fatal(err)
	}
	expect("always", original)

	// A volume without a root filesystem needs --mount or --to.
	if _, stderr, err := flrRun(f.biosA, "restore", "latest", "d0p1", "etc/hostname"); err == nil || !strings.Contains(stderr, "--mount") {
		t.Fatalf("restore to the places of a volume with no /etc/fstab, without --mount: %v", err)
	}

	// The token with VM B's UUID finds nothing, and the flag alone is
	// used with a warning.
	_, stderr, err := flrRun(f.biosB, "points")
	if err == nil || !strings.Contains(stderr, "no VM with BIOS UUID") {
		t.Fatalf("the token with VM B's UUID: %v: %s", err, stderr)
	}
	if _, stderr, err := flrRun(f.biosA, "ls", f.pointB.ID, "d0p1"); err == nil || !strings.Contains(stderr, "404") {
		t.Fatalf("ls of VM B's point: %v: %s", err, stderr)
	}
}

// buildFLR builds bulwark-flr into a temporary directory.
func buildFLR(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(build.Default.GOROOT, "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "bulwark-flr")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/bulwarkbackup/bulwark/cmd/bulwark-flr").CombinedOutput()
	if err != nil {
		t.Fatalf("build bulwark-flr: %v\n%s", err, out)
	}
	return bin
}
