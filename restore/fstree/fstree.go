// Package fstree turns a filesystem reader's files into an io/fs.FS.
//
// Each reader (ext, XFS, NTFS, FAT, exFAT) knows only its own on-disk
// structures: how to find the root, list a directory, read a file's
// contents and a symlink's target. Path walking, symlink resolution, name
// checks and the fs.File plumbing are the same for all of them and live
// here, once.
package fstree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// ErrCorrupt marks a structure that cannot be what the filesystem says it
// is: a hostile or damaged image. Readers wrap it with what and where.
var ErrCorrupt = errors.New("corrupt filesystem")

// ErrUnrecognized is returned by a reader's Open when the volume does not
// hold its filesystem, so that a prober can try the next one.
var ErrUnrecognized = errors.New("filesystem not recognized")

// Meta is a file's metadata as its filesystem records it. Fields a
// filesystem does not have are zero.
type Meta struct {
	// Mode has the type bits (fs.ModeDir, fs.ModeSymlink, fs.ModeDevice,
	// fs.ModeCharDevice, fs.ModeNamedPipe, fs.ModeSocket), the permission
	// bits and fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky.
	Mode fs.FileMode
	Size int64
	// HasOwner says UID and GID are meaningful (not on FAT, exFAT or NTFS).
	HasOwner bool
	UID, GID uint32
	// Times; Btime is the creation time where the filesystem keeps one.
	Mtime, Atime, Ctime, Btime time.Time
	// Inode identifies the file within its filesystem: hard links share it.
	// Zero where the filesystem has no such number (FAT, exFAT).
	Inode uint64
	Nlink uint32
	// Attributes are Windows FILE_ATTRIBUTE_* bits (NTFS, FAT, exFAT).
	Attributes uint32
	// Streams are an NTFS file's alternate data streams, listed only.
	Streams []Stream
}

// Windows file attribute bits, as NTFS, FAT and exFAT store them.
const (
	AttrReadOnly   = 0x1
	AttrHidden     = 0x2
	AttrSystem     = 0x4
	AttrDirectory  = 0x10
	AttrArchive    = 0x20
	AttrSparse     = 0x200
	AttrReparse    = 0x400
	AttrCompressed = 0x800
	AttrEncrypted  = 0x4000
)

// Stream is a named data stream beside a file's main contents.
type Stream struct {
	Name string
	Size int64
}

// Node is one file of a filesystem, as its reader loaded it.
type Node interface {
	Meta() Meta
}

// Entry is one name in a directory. Load reads the node it names; Type is
// the node's type bits when the directory records them, so that a listing
// need not load every node to say which entries are directories.
type Entry struct {
	Name string
	Type fs.FileMode
	Load func() (Node, error)
}

// Reader is what a filesystem reader implements. Its methods are called
// concurrently and must not share mutable state without locking.
type Reader interface {
	// Type names the filesystem: "ext4", "xfs", "ntfs", "fat32", ...
	Type() string
	// Label is the volume label, if any.
	Label() string
	Root() (Node, error)
	// ReadDir lists a directory node's entries, without "." and "..", in
	// any order.
	ReadDir(dir Node) ([]Entry, error)
	// Contents returns a regular file's data: Meta().Size bytes. Holes
	// read as zeros without reading the volume.
	Contents(file Node) (io.ReaderAt, error)
	// ReadLink returns a symlink node's target.
	ReadLink(link Node) (string, error)
}

// StreamReader is implemented by readers of filesystems with alternate data
// streams (NTFS).
type StreamReader interface {
	Stream(file Node, name string) (io.ReaderAt, int64, error)
}

// Limits bound the work of one path resolution and one directory listing,
// so that a hostile image cannot make them run forever.
const (
	// MaxSymlinks is how many symlinks one path may pass, as Linux allows.
	MaxSymlinks = 40
	// MaxName is the longest name accepted, in bytes (255 UTF-16 units of
	// NTFS take up to 765 bytes of UTF-8).
	MaxName = 1024
	// MaxPath is the longest symlink target accepted.
	MaxPath = 4096
)

// CheckName reports whether name can be an entry of a directory: not
// empty, ".", "..", nor holding '/' or NUL. FS.ReadDir applies it to every
// entry a reader lists, leaving out and reporting the bad ones while
// keeping the rest, so readers pass names on as they find them.
func CheckName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("directory entry %q: %w", name, ErrCorrupt)
	case len(name) > MaxName:
		return fmt.Errorf("directory entry of %d bytes: %w", len(name), ErrCorrupt)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("directory entry %q holds '/' or NUL: %w", name, ErrCorrupt)
	}
	return nil
}
