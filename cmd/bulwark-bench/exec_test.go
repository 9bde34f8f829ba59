package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "hi"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "efghi" {
		t.Errorf("got %q, want the last 5 bytes %q", got, "efghi")
	}
	b.Write([]byte("0123456789"))
	if got := b.String(); got != "56789" {
		t.Errorf("got %q, want %q", got, "56789")
	}
}

func TestCommandRun(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := command{Path: "/bin/sh", Args: []string{"-c", "cat; echo \"$X\""}, Env: []string{"X=from-env"}, Stdin: in}
	m, out, err := c.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello\nfrom-env\n" {
		t.Errorf("stdout = %q", out)
	}
	if m.Wall <= 0 || m.MaxRSS <= 0 {
		t.Errorf("measurement %+v lacks time or RSS", m)
	}

	c = command{Path: "/bin/sh", Args: []string{"-c", "echo boom >&2; exit 3"}}
	if _, _, err := c.run(context.Background()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error %v should quote stderr", err)
	}

	outFile := filepath.Join(dir, "out")
	c = command{Path: "/bin/echo", Args: []string{"to file"}, Stdout: outFile}
	if _, _, err := c.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outFile); string(b) != "to file\n" {
		t.Errorf("stdout file holds %q", b)
	}
}

func TestDirSize(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"config": 10, "packs/00/p1": 1000, "index/i1": 100, "index/sub/i2": 5, "indexes": 7}
	for name, size := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	total, index, err := dirSize(dir, "index")
	if err != nil {
		t.Fatal(err)
	}
	if total != 1122 || index != 105 {
		t.Errorf("dirSize = %d, %d; want 1122, 105", total, index)
	}
}
