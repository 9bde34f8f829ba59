// Package lvm reads LVM2: a physical volume's label and metadata, and the
// logical volumes of the volume groups those describe, each as an
// io.ReaderAt over the physical volumes' readers.
//
// Linear, striped and raid0 segments are mapped; of a raid1 or mirror LV
// one leg is read, the first whose physical volumes are all present. Thin
// pools and volumes, snapshots, caches and parity RAID are listed with the
// reason they cannot be read.
package lvm

import (
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// sectorSize is LVM's unit for on-disk sizes, whatever the device's.
const sectorSize = 512

// PV is a physical volume as its label and metadata area describe it.
type PV struct {
	// UUID is the PV's, in LVM's dashed form as `pvs -o pv_uuid` prints it.
	UUID string
	// Size is the device's size as ReadPV was given; DeviceSize is what
	// the label records.
	Size       int64
	DeviceSize int64
	// LabelSector is the 512-byte sector holding the label (0 to 3).
	LabelSector int
	// DataAreas and MetadataAreas are where the PV keeps extents and
	// metadata text, in bytes from its start. A data area of Size 0 runs
	// to the end of the device.
	DataAreas     []Area
	MetadataAreas []Area
	// VGName, VGID and Seqno are those of the volume group the metadata
	// describes; empty for a PV in no VG or without metadata areas.
	VGName string
	VGID   string
	Seqno  int64
	// Metadata is the text of the most recent metadata found, nil when
	// none is. MetadataErr says why metadata areas could not be read.
	Metadata    []byte
	MetadataErr error
}

// Area is a range of a physical volume, in bytes.
type Area struct {
	Offset, Size int64
}

// LV is a logical volume.
type LV struct {
	VG, VGID   string
	Name, UUID string
	// Size is the LV's size in bytes.
	Size     int64
	Segments []Segment
	// Err says why the LV cannot be read: its type is not supported, or a
	// physical volume it needs is missing. ReaderAt is nil then.
	Err      error
	ReaderAt io.ReaderAt
}

// Segment is a run of an LV's extents mapped one way.
type Segment struct {
	// Start and Length are in bytes within the LV.
	Start, Length int64
	// Type is the segment type of the metadata: "striped" (also for
	// linear), "raid1", "mirror", "thin", ...
	Type string
	// Stripes and StripeSize (bytes) are a striped or raid0 segment's.
	Stripes    int
	StripeSize int64
	// Areas are where the segment's extents are: on a PV (its UUID) or in
	// a sub-LV (its name), at an extent number.
	Areas []SegmentArea
}

// SegmentArea is one area of a segment.
type SegmentArea struct {
	PV     string // the PV's UUID, or
	LV     string // the sub-LV's name
	Extent int64
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("lvm: "+format+": %w", append(args, fstree.ErrCorrupt)...)
}
