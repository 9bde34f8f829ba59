package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// debugfsOutput is real "debugfs -f" output for three "ex -l" commands: a
// file with holes, a one-block file and an empty file.
const debugfsOutput = `debugfs 1.47.0 (5-Feb-2023)
debugfs: ex -l "/a/b/x y"
Level Entries       Logical        Physical Length Flags
 1/ 1   1/  8     0 -   234   7958 -   8192    235 
 1/ 1   2/  8   235 -   958   8962 -   9685    724 
 1/ 1   3/  8   960 -  1183   9686 -   9909    224 Uninit
debugfs: ex -l "/small"
Level Entries       Logical        Physical Length Flags
 0/ 0   1/  1     0 -     0  10099 -  10099      1 
debugfs: ex -l "/empty"
`

func TestParseExtents(t *testing.T) {
	groups, err := parseExtents(strings.NewReader(debugfsOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]extent{
		{
			{Logical: 0, Physical: 7958, Len: 235},
			{Logical: 235, Physical: 8962, Len: 724},
			{Logical: 960, Physical: 9686, Len: 224, Uninit: true},
		},
		{{Logical: 0, Physical: 10099, Len: 1}},
		nil,
	}
	if !reflect.DeepEqual(groups, want) {
		t.Errorf("parseExtents:\n got %+v\nwant %+v", groups, want)
	}
}

func TestParseExtentsWithoutEcho(t *testing.T) {
	// debugfs -R prints no command echo.
	groups, err := parseExtents(strings.NewReader(" 0/ 0   1/  1     5 -     6  100 -  101      2 \n"))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]extent{{{Logical: 5, Physical: 100, Len: 2}}}
	if !reflect.DeepEqual(groups, want) {
		t.Errorf("got %+v, want %+v", groups, want)
	}
}

func TestParseExtentsInconsistent(t *testing.T) {
	_, err := parseExtents(strings.NewReader(" 0/ 0   1/  1     0 -     9  100 -  104     10 \n"))
	if err == nil {
		t.Fatal("want an error for an extent whose physical range disagrees with its length")
	}
}

func TestExtentAreas(t *testing.T) {
	extents := []extent{
		{Physical: 10, Len: 2},
		{Physical: 20, Len: 1, Uninit: true},
		{Physical: 12, Len: 3},
	}
	got := extentAreas(extents, 4096, 1<<20)
	want := []area{{Off: 1<<20 + 10*4096, Len: 2 * 4096}, {Off: 1<<20 + 12*4096, Len: 3 * 4096}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if merged := mergeAreas(got); !reflect.DeepEqual(merged, []area{{Off: 1<<20 + 10*4096, Len: 5 * 4096}}) {
		t.Errorf("adjacent extents not merged: %+v", merged)
	}
}

func TestMergeAreas(t *testing.T) {
	tests := []struct {
		name string
		in   []area
		want []area
	}{
		{"empty", nil, nil},
		{"unsorted and disjoint", []area{{100, 10}, {0, 10}}, []area{{0, 10}, {100, 10}}},
		{"touching", []area{{0, 10}, {10, 5}}, []area{{0, 15}}},
		{"overlapping", []area{{0, 10}, {5, 10}}, []area{{0, 15}}},
		{"contained", []area{{0, 100}, {10, 5}, {50, 1}}, []area{{0, 100}}},
		{"gap of one byte", []area{{0, 10}, {11, 5}}, []area{{0, 10}, {11, 5}}},
		{"empty areas dropped", []area{{5, 0}, {0, 3}}, []area{{0, 3}}},
		{"chain", []area{{20, 10}, {0, 10}, {10, 10}, {40, 1}}, []area{{0, 30}, {40, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]area(nil), tt.in...)
			got := mergeAreas(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mergeAreas(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.in) {
				t.Errorf("mergeAreas modified its input: %v", tt.in)
			}
		})
	}
}

func TestSelectFiles(t *testing.T) {
	files := make([]sourceFile, 1000)
	for i := range files {
		files[i] = sourceFile{Path: fmt.Sprintf("f%04d", i), Size: 100_000}
	}
	files[0].Size = 0               // empty: skipped
	files[50].Path = `f0050"quoted` // debugfs cannot take it: skipped
	files[100].Size = 10_000_000    // more than a quarter of the target: skipped

	// 109.8 MB in all, so 2% is 2.196 MB: 22 files of 100 kB. Every 50th
	// file from 0 gives 17 usable files; the next pass, from 1, adds 5.
	got := selectFiles(files, 2)
	var want []string
	for i := 150; i < 1000; i += 50 {
		want = append(want, fmt.Sprintf("f%04d", i))
	}
	for _, i := range []int{1, 51, 101, 151, 201} {
		want = append(want, fmt.Sprintf("f%04d", i))
	}
	slices.Sort(want)
	var names []string
	for _, f := range got {
		names = append(names, f.Path)
	}
	if !slices.Equal(names, want) {
		t.Errorf("selectFiles picked\n%v\nwant\n%v", names, want)
	}
}

func TestSelectFilesNothingToDo(t *testing.T) {
	if got := selectFiles([]sourceFile{{"a", 0}}, 2); len(got) != 0 {
		t.Errorf("picked %v from empty files", got)
	}
}

func TestChangeApplyRevert(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "img")
	orig := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	img := &diskImage{Path: path}
	cs := &changeSet{
		Areas:     []area{{Off: 100, Len: 3000}, {Off: 40000, Len: 1 << 10}},
		AreasFile: filepath.Join(dir, "changed.txt"),
		SavedFile: filepath.Join(dir, "saved"),
		Seed:      7,
	}
	if err := copyAreas(path, cs.SavedFile, cs.Areas); err != nil {
		t.Fatal(err)
	}
	if err := cs.apply(img); err != nil {
		t.Fatal(err)
	}
	changed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != len(orig) {
		t.Fatalf("apply changed the size to %d", len(changed))
	}
	for i := range orig {
		inArea := (i >= 100 && i < 3100) || (i >= 40000 && i < 41024)
		if !inArea && changed[i] != orig[i] {
			t.Fatalf("byte %d outside the areas changed", i)
		}
	}
	if bytes.Equal(changed[100:3100], orig[100:3100]) {
		t.Error("area not overwritten")
	}

	if err := cs.apply(img); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, changed) {
		t.Error("applying the change twice gave different bytes")
	}
	if err := cs.revert(img); err != nil {
		t.Fatal(err)
	}
	if reverted, _ := os.ReadFile(path); !bytes.Equal(reverted, orig) {
		t.Error("revert did not restore the original bytes")
	}
}

func TestWriteAreas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "changed.txt")
	if err := writeAreas(path, []area{{1048576, 4096}, {2097152, 12288}}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1048576 4096\n2097152 12288\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
