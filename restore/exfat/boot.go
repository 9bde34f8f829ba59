package exfat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// volume is the geometry the boot sector describes, in bytes where it is
// a size or an offset.
type volume struct {
	sectorSize  int64
	clusterSize int64
	fatOffset   int64 // of the active FAT
	fatSize     int64
	heapOffset  int64  // of cluster 2
	clusters    uint32 // numbers 2 to clusters+1
	rootCluster uint32
}

// bootSectors is the main boot region: the boot sector, eight extended
// boot sectors, the OEM parameters, a reserved sector and the checksum.
const bootSectors = 12

func readBoot(r io.ReaderAt, size int64, verify bool) (volume, error) {
	var b [512]byte
	if size < int64(len(b)) {
		return volume{}, fmt.Errorf("exfat: volume of %d bytes: %w", size, fstree.ErrUnrecognized)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return volume{}, fmt.Errorf("exfat: read boot sector: %w", err)
	}
	if string(b[3:11]) != "EXFAT   " {
		return volume{}, fmt.Errorf("exfat: no exFAT boot sector: %w", fstree.ErrUnrecognized)
	}
	// The FAT BPB must be zeros, so that FAT drivers leave the volume be.
	if !allZero(b[11:64]) || b[510] != 0x55 || b[511] != 0xAA {
		return volume{}, fmt.Errorf("exfat: boot sector with a FAT BPB or no signature: %w", fstree.ErrCorrupt)
	}
	var (
		length     = binary.LittleEndian.Uint64(b[72:])
		fatOffset  = int64(binary.LittleEndian.Uint32(b[80:]))
		fatLength  = int64(binary.LittleEndian.Uint32(b[84:]))
		heapOffset = int64(binary.LittleEndian.Uint32(b[88:]))
		count      = binary.LittleEndian.Uint32(b[92:])
		root       = binary.LittleEndian.Uint32(b[96:])
		flags      = binary.LittleEndian.Uint16(b[106:])
		bpsShift   = b[108]
		spcShift   = b[109]
		fats       = int64(b[110])
	)
	if bpsShift < 9 || bpsShift > 12 || spcShift > 25-bpsShift || fats < 1 || fats > 2 {
		return volume{}, fmt.Errorf("exfat: sectors of 2^%d bytes, clusters of 2^%d sectors, %d FATs: %w", bpsShift, spcShift, fats, fstree.ErrCorrupt)
	}
	bps := int64(1) << bpsShift
	spc := int64(1) << spcShift
	if length > uint64(size/bps) {
		return volume{}, fmt.Errorf("exfat: volume of %d sectors on a device of %d bytes: %w", length, size, fstree.ErrCorrupt)
	}
	total := int64(length)
	active := int64(flags & 1)
	switch {
	case fatOffset < 24 || fatLength == 0 || fatOffset+fats*fatLength > heapOffset:
		return volume{}, fmt.Errorf("exfat: FAT at sector %d of %d sectors, heap at %d: %w", fatOffset, fatLength, heapOffset, fstree.ErrCorrupt)
	case active >= fats:
		return volume{}, fmt.Errorf("exfat: active FAT %d of %d: %w", active, fats, fstree.ErrCorrupt)
	case count == 0 || heapOffset+int64(count)*spc > total:
		return volume{}, fmt.Errorf("exfat: %d clusters from sector %d beyond the %d of the volume: %w", count, heapOffset, total, fstree.ErrCorrupt)
	case int64(count)+2 > fatLength*bps/4:
		return volume{}, fmt.Errorf("exfat: %d clusters in a FAT of %d sectors: %w", count, fatLength, fstree.ErrCorrupt)
	}
	v := volume{
		sectorSize:  bps,
		clusterSize: bps * spc,
		fatOffset:   (fatOffset + active*fatLength) * bps,
		fatSize:     fatLength * bps,
		heapOffset:  heapOffset * bps,
		clusters:    count,
		rootCluster: root,
	}
	if !v.valid(root) {
		return volume{}, fmt.Errorf("exfat: root directory at cluster %d of %d: %w", root, count, fstree.ErrCorrupt)
	}
	if verify {
		if err := checkBoot(r, bps); err != nil {
			return volume{}, err
		}
	}
	return v, nil
}

// checkBoot verifies the boot region's checksum, which covers its first
// eleven sectors but for the flags and the percent in use, which change
// without the checksum being rewritten.
func checkBoot(r io.ReaderAt, bps int64) error {
	region := make([]byte, bootSectors*bps)
	if n, err := r.ReadAt(region, 0); n < len(region) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("exfat: read boot region: %w", err)
	}
	var sum uint32
	for i, c := range region[:11*bps] {
		if i == 106 || i == 107 || i == 112 {
			continue
		}
		sum = (sum&1)<<31 + sum>>1 + uint32(c)
	}
	var want [4]byte
	binary.LittleEndian.PutUint32(want[:], sum)
	if !bytes.Equal(region[11*bps:], bytes.Repeat(want[:], int(bps/4))) {
		return fmt.Errorf("exfat: boot region checksum is not %#x: %w", sum, fstree.ErrCorrupt)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// valid says whether c numbers a cluster of the heap.
func (v *volume) valid(c uint32) bool { return c >= 2 && c-2 < v.clusters }

// offset is where cluster c starts on the volume.
func (v *volume) offset(c uint32) int64 { return v.heapOffset + int64(c-2)*v.clusterSize }
