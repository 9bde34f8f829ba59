package files

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Overwrite says what a restore does with a file that is already at the
// place it restores to. An existing directory is merged into whatever
// the policy; its mode, owner and times are replaced only by Always.
type Overwrite int

const (
	// Never keeps the existing file and counts the restored one skipped.
	Never Overwrite = iota
	// IfNewer replaces the existing file only when the restored file's
	// modification time is later.
	IfNewer
	// Always replaces whatever is there, also a directory where a file is
	// restored or a file where a directory is.
	Always
)

// ParseOverwrite parses "never", "if-newer" or "always".
func ParseOverwrite(s string) (Overwrite, error) {
	switch s {
	case "never":
		return Never, nil
	case "if-newer":
		return IfNewer, nil
	case "always":
		return Always, nil
	}
	return 0, fmt.Errorf("overwrite policy %q: want never, if-newer or always", s)
}

func (o Overwrite) String() string {
	switch o {
	case Never:
		return "never"
	case IfNewer:
		return "if-newer"
	case Always:
		return "always"
	}
	return fmt.Sprintf("Overwrite(%d)", int(o))
}

// Limits bound one restore or archive. Zero means no bound.
type Limits struct {
	// MaxFiles bounds the entries, of every type, directories included.
	MaxFiles int64
	// MaxBytes bounds the sum of the regular files' sizes.
	MaxBytes int64
}

// ErrLimit is returned when a restore or an archive would pass its Limits.
// It is found before anything is written when the tree can be counted
// first, which it is whenever Limits or a Progress function are set.
var ErrLimit = errors.New("limit reached")

// ErrInvalidName marks a name that the target system cannot hold.
var ErrInvalidName = errors.New("name not valid on the target system")

// Progress is where a restore or an archive is. Files counts entries of
// every type; the totals are zero when the tree was not counted first.
type Progress struct {
	Files, TotalFiles int64
	Bytes, TotalBytes int64
	// Path is the path being restored, in the source filesystem.
	Path string
}

// Options of Restore.
type Options struct {
	Overwrite Overwrite
	// Owner restores owners, and with them the setuid, setgid and sticky
	// bits, which only make sense with the owner. Where chown is not
	// permitted (not root), files are restored without both, and a
	// warning is logged.
	// Ignored on Windows.
	Owner bool
	// Progress, if set, is called now and then (at most every
	// ProgressInterval, and once at the end) from the restoring goroutine.
	// Setting Progress or Limits makes the tree be walked once before,
	// to count it.
	Progress func(Progress)
	// Log receives each failed or skipped path; nil discards.
	Log    *slog.Logger
	Limits Limits
	// GOOS is the system whose name rules the target follows (see
	// CheckName); empty means the running one.
	GOOS string
}

// ProgressInterval is how often Progress functions are called at most.
const ProgressInterval = 100 * time.Millisecond

// MaxErrors is how many failed paths a Summary lists; Failed counts all.
const MaxErrors = 1000

// Summary is what a restore or an archive did.
type Summary struct {
	Files, Dirs, Symlinks, HardLinks int64
	// Bytes are the regular files' contents copied.
	Bytes int64
	// Skipped counts the files kept by the overwrite policy and the
	// special files (devices, fifos, sockets), which are not restored.
	Skipped int64
	// Failed counts the paths that failed; Errors lists the first
	// MaxErrors of them.
	Failed int64
	Errors []PathError
}

// PathError is the failure of one path of the source filesystem.
type PathError struct {
	Path string
	Err  error
}

func (e PathError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e PathError) Unwrap() error { return e.Err }
