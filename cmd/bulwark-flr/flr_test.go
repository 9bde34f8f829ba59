package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

func TestParseFingerprint(t *testing.T) {
	want := sha256.Sum256([]byte("cert"))
	var colons []string
	for _, b := range want {
		colons = append(colons, fmt.Sprintf("%02X", b))
	}
	for _, s := range []string{strings.Join(colons, ":"), strings.ToLower(strings.Join(colons, "")), "sha256:" + strings.Join(colons, ":")} {
		got, err := parseFingerprint(s)
		if err != nil || got != want {
			t.Errorf("parseFingerprint(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "AB:CD", strings.Repeat("zz", 32), strings.Repeat("ab", 33)} {
		if _, err := parseFingerprint(s); err == nil {
			t.Errorf("parseFingerprint(%q) accepted", s)
		}
	}
}

func TestVolumePath(t *testing.T) {
	for in, want := range map[string]string{
		"": ".", "/": ".", "/etc/hosts": "etc/hosts", "etc/": "etc", "a//b/./c": "a/b/c",
		"../../etc": "etc", "/a/b/../c": "a/c",
	} {
		if got := volumePath(in); got != want {
			t.Errorf("volumePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTargets(t *testing.T) {
	a := &app{}
	root := fstest.MapFS{"etc/fstab": {Data: []byte("/dev/sda1 / ext4\n")}}
	got, err := a.targets(root, []string{"etc/hosts", "etc/fstab", "home/u", "."}, "", "/", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got["/etc"]) != 2 || len(got["/home"]) != 1 || len(got["/"]) != 1 {
		t.Fatalf("targets: %v", got)
	}
	if _, err := a.targets(fstest.MapFS{}, []string{"x"}, "", "/", false); err == nil {
		t.Fatal("a volume with no root filesystem is restored to / without --mount")
	}
	if got, err := a.targets(fstest.MapFS{}, []string{"x"}, "", "/srv", true); err != nil || len(got["/srv"]) != 1 {
		t.Fatalf("--mount /srv: %v, %v", got, err)
	}
	if _, err := a.targets(fstest.MapFS{}, []string{"x"}, "", "srv", true); err == nil {
		t.Fatal("a relative --mount accepted")
	}
	if got, err := a.targets(fstest.MapFS{}, []string{"a/x", "b"}, "/tmp/out", "/", false); err != nil || len(got["/tmp/out"]) != 2 {
		t.Fatalf("--to: %v, %v", got, err)
	}
}

// fakeAppliance serves one file through the file-level endpoints and
// counts the content requests.
type fakeAppliance struct {
	data     []byte
	mtime    time.Time
	requests atomic.Int64
	ranges   atomic.Int64 // bytes asked for in Range requests
}

func (f *fakeAppliance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer secret" {
		http.Error(w, `{"error":"no","code":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	name := r.URL.Query().Get("path")
	if name != "big.bin" && name != "." {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"no such file","code":"not_found"}`))
		return
	}
	uid := uint32(1000)
	file := fileapi.FileView{Name: "big.bin", Path: "big.bin", Type: "file", Mode: 0o100640, Size: int64(len(f.data)),
		Mtime: f.mtime, UID: &uid, GID: &uid, Inode: 12, Nlink: 1}
	switch {
	case strings.HasSuffix(r.URL.Path, "/files"):
		l := fileapi.Listing{File: file}
		if name == "." {
			l.File = fileapi.FileView{Name: ".", Path: ".", Type: "dir", Mode: 0o40755, Mtime: f.mtime}
			l.Entries = []fileapi.FileView{file}
		}
		_ = json.NewEncoder(w).Encode(l)
	case strings.HasSuffix(r.URL.Path, "/content"):
		f.requests.Add(1)
		var first, last int64
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last); err == nil {
			f.ranges.Add(last - first + 1)
		}
		http.ServeContent(w, r, "", f.mtime, bytes.NewReader(f.data))
	default:
		http.NotFound(w, r)
	}
}

func TestRemoteFSReadsInBlocks(t *testing.T) {
	data := make([]byte, 10<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	fake := &fakeAppliance{data: data, mtime: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)}
	srv := httptest.NewTLSServer(fake)
	defer srv.Close()
	pin := sha256.Sum256(srv.Certificate().Raw)
	c := fileapi.New(srv.URL, pin, "secret")
	fsys := newRemoteFS(context.Background(), c, "0123456789ab", "d0p1")

	entries, err := fs.ReadDir(fsys, ".")
	if err != nil || len(entries) != 1 {
		t.Fatalf("ReadDir: %v, %v", entries, err)
	}
	info, err := entries[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := fstree.MetaOf(info)
	if !ok || !m.HasOwner || m.UID != 1000 || m.Inode != 12 || info.Mode() != 0o640 || !info.ModTime().Equal(fake.mtime) {
		t.Fatalf("entry info: %v %+v", info.Mode(), m)
	}
	got, err := fs.ReadFile(fsys, "big.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadFile: %d bytes, %v", len(got), err)
	}
	// 10 MiB in blocks of 4 MiB: 3 requests, each file byte asked for once.
	if n := fake.requests.Load(); n != 3 {
		t.Errorf("%d content requests, want 3", n)
	}
	if n := fake.ranges.Load(); n != int64(len(data)) {
		t.Errorf("%d bytes asked for, the file has %d", n, len(data))
	}
	if _, err := fsys.Open("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open of a missing file: %v", err)
	}
	// Seeking back and forth and a Close under way.
	f, err := fsys.Open("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(f, buf); err != nil || !bytes.Equal(buf, data[:1000]) {
		t.Fatalf("first read: %v", err)
	}
	rf := f.(*remoteFile)
	rf.off = 9 << 20
	if _, err := io.ReadFull(f, buf); err != nil || !bytes.Equal(buf, data[9<<20:9<<20+1000]) {
		t.Fatalf("read after a jump: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// A wrong pin is refused.
	bad := newRemoteFS(context.Background(), fileapi.New(srv.URL, [32]byte{1}, "secret"), "0123456789ab", "d0p1")
	if _, err := fs.Stat(bad, "big.bin"); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("stat through a wrong pin: %v", err)
	}
}
