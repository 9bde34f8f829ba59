// Package partition reads the partition table of a disk: GPT (with its
// backup header when the primary one is damaged) or MBR (with the logical
// partitions of its extended partitions).
package partition

import (
	"errors"
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// Table kinds.
const (
	KindGPT  = "gpt"
	KindMBR  = "mbr"
	KindNone = "none" // no partition table: a filesystem may start at 0
)

// Table is a disk's partition table.
type Table struct {
	Kind string
	// SectorSize is the logical sector size the table is written for, in
	// bytes: 512 or 4096.
	SectorSize int
	// DiskGUID is a GPT disk's GUID; DiskID an MBR disk's signature.
	DiskGUID string
	DiskID   uint32
	// Partitions are in the order of their numbers.
	Partitions []Partition
	// Warning says what was wrong but could be worked around, such as a
	// damaged primary GPT header whose backup was used.
	Warning string
}

// Partition is one entry of a partition table.
type Partition struct {
	// Number is the partition's number as Linux counts it: a GPT entry's
	// index plus one; MBR primaries 1-4 and logical partitions from 5.
	Number int
	// Start and Length are in bytes from the start of the disk.
	Start, Length int64
	// Type is the MBR type byte in hex ("83") or the GPT type GUID
	// ("0FC63DAF-8483-4772-8E79-3D69D8477DE4"); TypeName says what it
	// means when it is known.
	Type     string
	TypeName string
	// Name and GUID are a GPT entry's; Attributes its attribute bits.
	Name       string
	GUID       string
	Attributes uint64
	// Bootable is an MBR entry's active flag.
	Bootable bool
	// Extended marks an MBR extended partition: a container of logical
	// partitions, not a volume.
	Extended bool
}

// Read reads the partition table of a disk of the given size. A GPT is
// found on 512- and 4096-byte-sector disks alike. An MBR does not say its
// sector size: 512 is assumed unless the table only makes sense with 4096
// (a chain of extended boot records is found only there); use
// ReadSectorSize when the disk's sector size is known.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	return read(r, size, 0)
}

// ReadSectorSize is Read for a disk whose logical sector size is known.
func ReadSectorSize(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if sectorSize != 512 && sectorSize != 4096 {
		return nil, fmt.Errorf("partition: sector size %d: not 512 or 4096", sectorSize)
	}
	return read(r, size, sectorSize)
}

func read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if size < 0 {
		return nil, fmt.Errorf("partition: disk size %d", size)
	}
	if size < 512 {
		return &Table{Kind: KindNone, SectorSize: 512}, nil
	}
	mbr := make([]byte, 512)
	if err := readFull(r, mbr, 0); err != nil {
		return nil, fmt.Errorf("partition: read MBR: %w", err)
	}
	m, ok := parseMBR(mbr)
	if ok && m.protective() {
		t, err := readGPT(r, size, sectorSize)
		if errors.Is(err, errNoGPT) {
			return nil, corrupt("protective MBR without a GPT header")
		}
		return t, err
	}
	if !ok {
		// No MBR, yet a GPT may still be there (its protective MBR wiped
		// by a tool that zeroed the first sector only).
		t, err := readGPT(r, size, sectorSize)
		if err == nil {
			t.Warning = join(t.Warning, "no protective MBR")
			return t, nil
		}
		if !errors.Is(err, errNoGPT) {
			return nil, err
		}
		return &Table{Kind: KindNone, SectorSize: max(sectorSize, 512)}, nil
	}
	if m.unused() {
		// A filesystem's boot sector whose code leaves the slots
		// zero, or a table with nothing in it: either way the
		// filesystem, if any, starts at 0.
		return &Table{Kind: KindNone, SectorSize: max(sectorSize, 512)}, nil
	}
	if sectorSize != 0 {
		return readMBR(r, size, m, sectorSize)
	}
	t, err := readMBR(r, size, m, 512)
	if err == nil {
		return t, nil
	}
	if t4, err4 := readMBR(r, size, m, 4096); err4 == nil {
		return t4, nil
	}
	return nil, err
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("partition: "+format+": %w", append(args, fstree.ErrCorrupt)...)
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
