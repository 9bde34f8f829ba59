package fat

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

// volume is the geometry the boot sector describes, in bytes where it is
// a size or an offset.
type volume struct {
	bits        int // 12, 16 or 32: the width of a FAT entry
	clusterSize int64
	fatOffset   int64 // of the FAT in use
	fatSize     int64
	rootOffset  int64 // FAT12/16: the fixed root directory
	rootSize    int64
	dataOffset  int64  // of cluster 2
	clusters    uint32 // data clusters: numbers 2 to clusters+1
	rootCluster uint32 // FAT32; 0 on FAT12/16
	label       string
}

// The cluster counts that decide the FAT type, as Microsoft's
// specification defines them.
const (
	maxFAT12Clusters = 4084
	maxFAT16Clusters = 65524
	maxFAT32Clusters = 0x0FFFFFF5 - 1 // 0x0FFFFFF7 is "bad", numbers start at 2
)

func readBoot(r io.ReaderAt, size int64) (volume, error) {
	var b [512]byte
	if size < int64(len(b)) {
		return volume{}, fmt.Errorf("fat: volume of %d bytes: %w", size, fstree.ErrUnrecognized)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return volume{}, fmt.Errorf("fat: read boot sector: %w", err)
	}
	var (
		bps        = int64(binary.LittleEndian.Uint16(b[11:]))
		spc        = int64(b[13])
		reserved   = int64(binary.LittleEndian.Uint16(b[14:]))
		fats       = int64(b[16])
		rootCount  = int64(binary.LittleEndian.Uint16(b[17:]))
		total      = int64(binary.LittleEndian.Uint16(b[19:]))
		media      = b[21]
		fatSectors = int64(binary.LittleEndian.Uint16(b[22:]))
	)
	// What every FAT boot sector has, and NTFS's and exFAT's have not.
	jump := b[0] == 0xEB && b[2] == 0x90 || b[0] == 0xE9
	if !jump || bps < 512 || bps > 4096 || bps&(bps-1) != 0 ||
		spc == 0 || spc&(spc-1) != 0 || reserved == 0 || fats == 0 ||
		media != 0xF0 && media < 0xF8 {
		return volume{}, fmt.Errorf("fat: no FAT boot sector: %w", fstree.ErrUnrecognized)
	}
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(b[32:]))
	}
	// A FAT32 boot sector has no FAT16 sizes. Microsoft's rule decides
	// the type by the cluster count alone, but mkfs.fat makes FAT32
	// volumes of fewer clusters when asked, and they have no fixed root
	// directory to read as FAT16: like Linux, the boot sector's shape
	// decides FAT32, and the count decides between FAT12 and FAT16.
	fat32 := fatSectors == 0 && rootCount == 0
	if fat32 {
		fatSectors = int64(binary.LittleEndian.Uint32(b[36:]))
	}
	if total == 0 || fatSectors == 0 {
		return volume{}, fmt.Errorf("fat: boot sector: %d sectors, FAT of %d sectors: %w", total, fatSectors, fstree.ErrCorrupt)
	}
	if total*bps > size {
		return volume{}, fmt.Errorf("fat: volume of %d bytes on a device of %d: %w", total*bps, size, fstree.ErrCorrupt)
	}
	rootSectors := (rootCount*32 + bps - 1) / bps
	data := reserved + fats*fatSectors + rootSectors
	if data >= total {
		return volume{}, fmt.Errorf("fat: data area at sector %d of %d: %w", data, total, fstree.ErrCorrupt)
	}
	v := volume{
		clusterSize: bps * spc,
		fatSize:     fatSectors * bps,
		rootOffset:  (reserved + fats*fatSectors) * bps,
		rootSize:    rootCount * 32,
		dataOffset:  data * bps,
	}
	count := (total - data) / spc
	switch {
	case fat32:
		v.bits = 32
	case count <= maxFAT12Clusters:
		v.bits = 12
	case count <= maxFAT16Clusters:
		v.bits = 16
	default:
		return volume{}, fmt.Errorf("fat: %d clusters in a FAT16 boot sector: %w", count, fstree.ErrCorrupt)
	}
	// Linux reads a FAT too short for the clusters as far as it goes.
	if entries := v.fatSize * 8 / int64(v.bits); count > entries-2 {
		count = entries - 2
	}
	if count < 1 || count > maxFAT32Clusters {
		return volume{}, fmt.Errorf("fat: %d clusters: %w", count, fstree.ErrCorrupt)
	}
	v.clusters = uint32(count)
	active := int64(0)
	labelAt := 43
	if fat32 {
		labelAt = 71
		flags := binary.LittleEndian.Uint16(b[40:])
		if flags&0x80 != 0 { // mirroring off: one FAT is active
			active = int64(flags & 0x0F)
			if active >= fats {
				return volume{}, fmt.Errorf("fat: active FAT %d of %d: %w", active, fats, fstree.ErrCorrupt)
			}
		}
		v.rootCluster = binary.LittleEndian.Uint32(b[44:])
		if !v.valid(v.rootCluster) {
			return volume{}, fmt.Errorf("fat: root directory at cluster %d of %d: %w", v.rootCluster, v.clusters, fstree.ErrCorrupt)
		}
		// FSInfo only hints at free clusters, which a reader never
		// needs, so its contents are not read; where it is must still
		// be in the reserved sectors.
		if info := int64(binary.LittleEndian.Uint16(b[48:])); info != 0 && info != 0xFFFF && info >= reserved {
			return volume{}, fmt.Errorf("fat: FSInfo at sector %d beyond the %d reserved: %w", info, reserved, fstree.ErrCorrupt)
		}
	}
	v.fatOffset = reserved*bps + active*v.fatSize
	if b[labelAt-5] == 0x29 { // extended boot signature: the label field exists
		v.label = oemString(b[labelAt : labelAt+11])
		if v.label == "NO NAME" {
			v.label = ""
		}
	}
	return v, nil
}

// valid says whether c numbers a data cluster of the volume.
func (v *volume) valid(c uint32) bool { return c >= 2 && c-2 < v.clusters }

// offset is where cluster c starts on the volume.
func (v *volume) offset(c uint32) int64 { return v.dataOffset + int64(c-2)*v.clusterSize }
