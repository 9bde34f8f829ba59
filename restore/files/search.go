package files

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
)

// Match is a file found by Search.
type Match struct {
	Path    string // in the searched filesystem
	Mode    fs.FileMode
	Size    int64
	ModTime time.Time
}

// DefaultSearchLimit is the limit of a Search given none.
const DefaultSearchLimit = 1000

// maxSearchErrors is how many errors (unreadable directories, loops) a
// Search returns with its matches.
const maxSearchErrors = 10

// Search finds the files below root whose base names match pattern, case
// aside: a glob as path.Match takes it when it has any of "*?[", else a
// substring. It walks without following symlinks, passes directory loops,
// and stops after limit matches (DefaultSearchLimit if limit <= 0): a
// result of limit matches may be incomplete. Directories that cannot be
// read are passed over; the first of their errors are returned, joined,
// with the matches found, as is the context's error if it is done.
func Search(ctx context.Context, fsys fs.FS, root, pattern string, limit int) ([]Match, error) {
	if pattern == "" {
		return nil, errors.New("search: empty pattern")
	}
	root, err := cleanPath(root)
	if err != nil {
		return nil, err
	}
	pattern = strings.ToLower(pattern)
	match := func(name string) bool { return strings.Contains(name, pattern) }
	if strings.ContainsAny(pattern, "*?[") {
		if _, err := path.Match(pattern, ""); err != nil {
			return nil, fmt.Errorf("search: pattern %q: %w", pattern, err)
		}
		match = func(name string) bool {
			ok, _ := path.Match(pattern, name)
			return ok
		}
	}
	if limit <= 0 {
		limit = DefaultSearchLimit
	}
	var (
		matches []Match
		errs    []error
		full    = errors.New("limit reached")
	)
	w := walker{ctx: ctx, fsys: fsys}
	w.report = func(src string, err error) {
		if len(errs) < maxSearchErrors {
			errs = append(errs, PathError{Path: src, Err: err})
		}
	}
	w.visit = func(e *entry) (bool, error) {
		if e.src == root || !match(strings.ToLower(path.Base(e.src))) {
			return true, nil
		}
		matches = append(matches, Match{Path: e.src, Mode: e.info.Mode(), Size: e.info.Size(), ModTime: e.info.ModTime()})
		if len(matches) >= limit {
			return false, full
		}
		return true, nil
	}
	err = w.walkPaths([]string{root})
	if err != nil && err != full {
		errs = append(errs, err)
	}
	return matches, errors.Join(errs...)
}
