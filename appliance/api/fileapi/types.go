// Package fileapi is the file-level restore part of the appliance's API as
// a client sees it: the types its endpoints exchange and a client of them.
// It does not depend on the appliance's store, so that the in-guest client
// bulwark-flr builds for every system a guest runs.
package fileapi

import (
	"encoding/hex"
	"io/fs"
	"strings"
	"time"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// VolumeView is a volume of a point: a disk, partition or logical volume
// and the filesystem it holds.
type VolumeView struct {
	// ID names the volume as the CLI does: "d0p1", "vg0/root".
	ID string `json:"id"`
	// Ref is the ID as the path of the volume's endpoints spells it: see
	// VolumeRef.
	Ref string `json:"ref"`
	// Disk is the index of the disk holding the volume; -1 for an LV.
	Disk    int    `json:"disk"`
	Kind    string `json:"kind"`
	FSType  string `json:"fs_type,omitempty"`
	Label   string `json:"label,omitempty"`
	Offset  int64  `json:"offset"`
	Size    int64  `json:"size"`
	Error   string `json:"error,omitempty"`
	Warning string `json:"warning,omitempty"`
	// Browsable says whether the volume holds a filesystem that can be
	// read.
	Browsable bool `json:"browsable"`
}

// VolumeID reverses VolumeRef.
func VolumeID(ref string) string { return strings.ReplaceAll(ref, ":", "/") }

// VolumeRef spells a volume ID as one path segment of the API's URLs. A
// path segment may not hold '/', and an LV's ID
// "vg/lv" does: it is written "vg:lv". LVM names cannot hold ':', and the
// other IDs ("d0", "d0p1") hold neither.
func VolumeRef(id string) string { return strings.ReplaceAll(id, "/", ":") }

// FileView is a file of a volume with the metadata its filesystem keeps.
type FileView struct {
	// Name is the file's last path element; "." for the root.
	Name string `json:"name"`
	// Path is the file's path in the volume, "." for the root.
	Path string `json:"path"`
	// Type is file, dir, symlink, block-device, char-device, fifo or
	// socket.
	Type string `json:"type"`
	// Mode is the Unix st_mode: type bits, permission bits, setuid,
	// setgid and sticky.
	Mode  uint32    `json:"mode"`
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
	Atime time.Time `json:"atime,omitzero"`
	Ctime time.Time `json:"ctime,omitzero"`
	Btime time.Time `json:"btime,omitzero"`
	// UID and GID are set where the filesystem keeps owners.
	UID *uint32 `json:"uid,omitempty"`
	GID *uint32 `json:"gid,omitempty"`
	// Attributes are Windows FILE_ATTRIBUTE_* bits (NTFS, FAT, exFAT).
	Attributes uint32 `json:"attributes,omitempty"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
	// Inode is shared by hard links; Nlink counts them.
	Inode   uint64       `json:"inode,omitempty"`
	Nlink   uint32       `json:"nlink,omitempty"`
	Streams []StreamView `json:"streams,omitempty"`
	// Error says why the entry's metadata could not be read; the other
	// fields but Name and Path are then empty.
	Error string `json:"error,omitempty"`
}

// StreamView is an alternate data stream of an NTFS file.
type StreamView struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// Listing is a file and, for a directory, a page of its entries sorted by
// name.
type Listing struct {
	File    FileView   `json:"file"`
	Entries []FileView `json:"entries,omitempty"`
	// More says that entries follow the last one listed: ask again with
	// after set to its name.
	More bool `json:"more,omitempty"`
	// Errors are what was wrong with the directory: entries left out
	// because their names cannot be paths, for one.
	Errors []string `json:"errors,omitempty"`
}

// MatchView is a file found by a search.
type MatchView struct {
	Path  string    `json:"path"`
	Type  string    `json:"type"`
	Mode  uint32    `json:"mode"`
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
}

// SearchResult is what a search found.
type SearchResult struct {
	Matches []MatchView `json:"matches"`
	// Complete is false when the search stopped at its limit or its time
	// bound: there may be more matches.
	Complete bool `json:"complete"`
	// Errors are directories that could not be read, and why the search
	// stopped early.
	Errors []string `json:"errors,omitempty"`
}

// Meta returns the metadata of a FileView as a filesystem reader gives it.
func (v *FileView) Meta() fstree.Meta {
	m := fstree.Meta{Mode: FileModeOf(v.Mode), Size: v.Size, Mtime: v.Mtime, Atime: v.Atime, Ctime: v.Ctime,
		Btime: v.Btime, Inode: v.Inode, Nlink: v.Nlink, Attributes: v.Attributes}
	if v.UID != nil && v.GID != nil {
		m.HasOwner, m.UID, m.GID = true, *v.UID, *v.GID
	}
	for _, st := range v.Streams {
		m.Streams = append(m.Streams, fstree.Stream{Name: st.Name, Size: st.Size})
	}
	return m
}

// Unix st_mode bits.
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
	sISUID  = 0o4000
	sISGID  = 0o2000
	sISVTX  = 0o1000
)

// UnixMode turns a Go file mode into a Unix st_mode.
func UnixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	switch m.Type() {
	case 0:
		u |= sIFREG
	case fs.ModeDir:
		u |= sIFDIR
	case fs.ModeSymlink:
		u |= sIFLNK
	case fs.ModeDevice:
		u |= sIFBLK
	case fs.ModeDevice | fs.ModeCharDevice, fs.ModeCharDevice:
		u |= sIFCHR
	case fs.ModeNamedPipe:
		u |= sIFIFO
	case fs.ModeSocket:
		u |= sIFSOCK
	}
	if m&fs.ModeSetuid != 0 {
		u |= sISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= sISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= sISVTX
	}
	return u
}

// FileModeOf turns a Unix st_mode into a Go file mode.
func FileModeOf(u uint32) fs.FileMode {
	m := fs.FileMode(u & 0o777)
	switch u & sIFMT {
	case sIFDIR:
		m |= fs.ModeDir
	case sIFLNK:
		m |= fs.ModeSymlink
	case sIFBLK:
		m |= fs.ModeDevice
	case sIFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case sIFIFO:
		m |= fs.ModeNamedPipe
	case sIFSOCK:
		m |= fs.ModeSocket
	case sIFREG:
	default:
		m |= fs.ModeIrregular
	}
	if u&sISUID != 0 {
		m |= fs.ModeSetuid
	}
	if u&sISGID != 0 {
		m |= fs.ModeSetgid
	}
	if u&sISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// TypeName names a file type as FileView.Type does.
func TypeName(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "file"
	case t == fs.ModeDir:
		return "dir"
	case t == fs.ModeSymlink:
		return "symlink"
	case t&fs.ModeCharDevice != 0:
		return "char-device"
	case t == fs.ModeDevice:
		return "block-device"
	case t == fs.ModeNamedPipe:
		return "fifo"
	case t == fs.ModeSocket:
		return "socket"
	}
	return "other"
}

// SameBIOSUUID reports whether two spellings of a VM's BIOS UUID name the
// same VM. vSphere's config.uuid and the SMBIOS system UUID that a guest
// reads carry the same 16 bytes, but SMBIOS 2.6 and later store the first
// three fields little-endian, and guests differ in whether they swap them
// back: both orders are accepted.
func SameBIOSUUID(a, b string) bool {
	x, okx := parseUUID(a)
	y, oky := parseUUID(b)
	if !okx || !oky {
		return false
	}
	return x == y || x == swapUUID(y)
}

func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	s = strings.TrimSpace(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "uuid:"))
	s = strings.Trim(s, "{}")
	s = strings.ReplaceAll(strings.ReplaceAll(s, "-", ""), " ", "")
	if len(s) != 32 {
		return u, false
	}
	if _, err := hex.Decode(u[:], []byte(s)); err != nil {
		return u, false
	}
	return u, u != [16]byte{}
}

// swapUUID reverses the bytes of a UUID's first three fields.
func swapUUID(u [16]byte) [16]byte {
	u[0], u[1], u[2], u[3] = u[3], u[2], u[1], u[0]
	u[4], u[5] = u[5], u[4]
	u[6], u[7] = u[7], u[6]
	return u
}
