package main

import (
	"reflect"
	"testing"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"4096", 4096},
		{"64K", 64 << 10},
		{"64KiB", 64 << 10},
		{"300MiB", 300 << 20},
		{"300mb", 300 << 20},
		{"1.5GiB", 3 << 29},
		{"4G", 4 << 30},
		{" 2 GiB ", 2 << 30},
		{"10B", 10},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1M", "1X", "1.2.3K", "NaN", "1e30T"} {
		if got, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", bad, got)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.00 KiB"},
		{3 << 29, "1.50 GiB"},
		{5 << 40, "5.00 TiB"},
		{5 << 50, "5120.00 TiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.in); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseChunkSets(t *testing.T) {
	got, err := parseChunkSets(defaultChunkSets)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0] != (chunkParams{64 << 10, 256 << 10, 1 << 20}) || got[4] != (chunkParams{1 << 20, 4 << 20, 16 << 20}) {
		t.Errorf("parseChunkSets(default) = %+v", got)
	}
	if s := got[1].String(); s != "128K/512K/2M" {
		t.Errorf("String() = %q", s)
	}
	one, err := parseChunkSets(" 1000/4096/10000 ")
	if err != nil || !reflect.DeepEqual(one, []chunkParams{{1000, 4096, 10000}}) {
		t.Errorf("parseChunkSets(bytes) = %+v, %v", one, err)
	}
	for _, bad := range []string{"", "64K/256K", "64K/300K/1M", "512K/256K/1M", "64K/256K/128K", "0/1M/2M", "a/b/c"} {
		if sets, err := parseChunkSets(bad); err == nil {
			t.Errorf("parseChunkSets(%q) = %+v, want an error", bad, sets)
		}
	}
}
