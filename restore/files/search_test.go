package files

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
)

func matchPaths(m []Match) []string {
	var out []string
	for _, x := range m {
		out = append(out, x.Path)
	}
	return out
}

func TestSearch(t *testing.T) {
	loop := fstreetest.MemDir(fstreetest.Named("loop.txt", fstreetest.MemFile("x")))
	loop.Children = append(loop.Children, fstreetest.Named("again", loop))
	fsys := memFS(
		fstreetest.Named("Docs", fstreetest.MemDir(fstreetest.Named("Report.TXT", fstreetest.MemFile("r")), fstreetest.Named("notes.md", fstreetest.MemFile("n")))),
		fstreetest.Named("Ünïcode", fstreetest.MemDir(fstreetest.Named("ÜBER.md", fstreetest.MemFile("u")))),
		fstreetest.Named("top.txt", fstreetest.MemLink("Docs/Report.TXT")),
		fstreetest.Named("loop", loop),
	)
	ctx := context.Background()
	for _, tc := range []struct {
		root, pattern string
		limit         int
		want          []string
	}{
		{".", "*.txt", 0, []string{"Docs/Report.TXT", "loop/loop.txt", "top.txt"}},
		{"/Docs/", "*.TXT", 0, []string{"Docs/Report.TXT"}},
		{".", "über", 0, []string{"Ünïcode/ÜBER.md"}},
		{".", "o", 2, []string{"Docs", "Docs/Report.TXT"}},
		{".", "[n]otes.*", 0, []string{"Docs/notes.md"}},
		{"Docs", "docs", 0, nil},
	} {
		got, err := Search(ctx, fsys, tc.root, tc.pattern, tc.limit)
		if err != nil && !errors.Is(err, ErrLoop) {
			t.Errorf("Search(%s, %s): %v", tc.root, tc.pattern, err)
		}
		if !slices.Equal(matchPaths(got), tc.want) {
			t.Errorf("Search(%s, %s, %d) = %q, want %q", tc.root, tc.pattern, tc.limit, matchPaths(got), tc.want)
		}
	}
	if _, err := Search(ctx, fsys, ".", "*.txt", 0); !errors.Is(err, ErrLoop) {
		t.Errorf("the loop is not reported: %v", err)
	}
	if _, err := Search(ctx, fsys, ".", "[", 0); err == nil {
		t.Error("a bad pattern was taken")
	}
	if _, err := Search(ctx, fsys, ".", "", 0); err == nil {
		t.Error("an empty pattern was taken")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Search(cancelled, fsys, ".", "x", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestSearchDirFS(t *testing.T) {
	base := t.TempDir()
	for _, p := range []string{"a/b/Target.log", "a/target", "c/other"} {
		writeFile(t, filepath.Join(base, p), nil, 0o644)
	}
	if err := os.Symlink("..", filepath.Join(base, "a", "b", "up")); err != nil {
		t.Fatal(err)
	}
	got, err := Search(context.Background(), os.DirFS(base), ".", "TARGET", 10)
	if err != nil || !slices.Equal(matchPaths(got), []string{"a/b/Target.log", "a/target"}) {
		t.Errorf("%q, %v", matchPaths(got), err)
	}
	if got[0].Size != 0 || !got[0].Mode.IsRegular() {
		t.Errorf("%+v", got[0])
	}
}
