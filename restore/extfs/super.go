package extfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const (
	superOffset = 1024 // the superblock's place on the volume, whatever the block size
	superSize   = 1024
	superMagic  = 0xEF53
)

// Feature flags of the superblock.
const (
	compatHasJournal   = 0x4
	compatDirIndex     = 0x20
	compatSparseSuper2 = 0x200

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64Bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	// incompatKnown are the incompatible features this package reads. A
	// filesystem with any other cannot be read correctly.
	incompatKnown = incompatCompression | incompatFiletype | incompatRecover |
		incompatMetaBG | incompatExtents | incompat64Bit | incompatMMP |
		incompatFlexBG | incompatEAInode | incompatDirData | incompatCsumSeed |
		incompatLargeDir | incompatInlineData | incompatEncrypt | incompatCasefold

	roCompatSparseSuper  = 0x1
	roCompatLargeFile    = 0x2
	roCompatBtreeDir     = 0x4
	roCompatHugeFile     = 0x8
	roCompatGdtCsum      = 0x10
	roCompatBigalloc     = 0x200
	roCompatMetadataCsum = 0x400
)

// Superblock flags: how the directory hash treats bytes above 0x7f.
const (
	flagSignedHash   = 0x1
	flagUnsignedHash = 0x2
)

// superblock holds the fields of the on-disk superblock this package uses.
type superblock struct {
	inodesCount    uint32
	blocksCount    uint64
	firstDataBlock uint32
	logBlockSize   uint32 // block size is 1024 << logBlockSize
	logClusterSize uint32
	blocksPerGroup uint32
	inodesPerGroup uint32
	inodeSize      uint32
	compat         uint32
	incompat       uint32
	roCompat       uint32
	label          string
	hashSeed       [4]uint32
	descSize       uint32
	firstMetaBG    uint32
	flags          uint32
	backupBGs      [2]uint32
	groups         uint32
}

func (sb *superblock) blockSize() int64 { return 1024 << sb.logBlockSize }

func parseSuperblock(b []byte) (superblock, error) {
	le := binary.LittleEndian
	if le.Uint16(b[0x38:]) != superMagic {
		return superblock{}, fmt.Errorf("no ext magic: %w", fstree.ErrUnrecognized)
	}
	sb := superblock{
		inodesCount:    le.Uint32(b[0x0:]),
		blocksCount:    uint64(le.Uint32(b[0x4:])),
		firstDataBlock: le.Uint32(b[0x14:]),
		logBlockSize:   le.Uint32(b[0x18:]),
		logClusterSize: le.Uint32(b[0x1c:]),
		blocksPerGroup: le.Uint32(b[0x20:]),
		inodesPerGroup: le.Uint32(b[0x28:]),
		inodeSize:      128,
		descSize:       32,
	}
	rev := le.Uint32(b[0x4c:])
	switch rev {
	case 0:
	case 1:
		sb.inodeSize = uint32(le.Uint16(b[0x58:]))
		sb.compat = le.Uint32(b[0x5c:])
		sb.incompat = le.Uint32(b[0x60:])
		sb.roCompat = le.Uint32(b[0x64:])
	default:
		return superblock{}, fmt.Errorf("revision %d: %w", rev, errors.ErrUnsupported)
	}
	if sb.incompat&incompatJournalDev != 0 {
		return superblock{}, fmt.Errorf("an external journal, not a filesystem: %w", fstree.ErrUnrecognized)
	}
	if unknown := sb.incompat &^ incompatKnown; unknown != 0 {
		return superblock{}, fmt.Errorf("incompatible features %#x: %w", unknown, errors.ErrUnsupported)
	}
	label := b[0x78:0x88]
	if i := bytes.IndexByte(label, 0); i >= 0 {
		label = label[:i]
	}
	sb.label = string(label)
	for i := range sb.hashSeed {
		sb.hashSeed[i] = le.Uint32(b[0xec+4*i:])
	}
	sb.firstMetaBG = le.Uint32(b[0x104:])
	sb.flags = le.Uint32(b[0x160:])
	sb.backupBGs = [2]uint32{le.Uint32(b[0x24c:]), le.Uint32(b[0x250:])}
	if sb.incompat&incompat64Bit != 0 {
		sb.blocksCount |= uint64(le.Uint32(b[0x150:])) << 32
		sb.descSize = uint32(le.Uint16(b[0xfe:]))
	}
	if err := sb.check(); err != nil {
		return superblock{}, err
	}
	return sb, nil
}

// check rejects the geometry that later arithmetic could not survive.
func (sb *superblock) check() error {
	bs := uint64(1024) << min(sb.logBlockSize, 16)
	switch {
	case sb.logBlockSize > 6:
		return corrupt("block size 2^%d KiB", sb.logBlockSize)
	case sb.inodeSize < 128 || sb.inodeSize > uint32(bs) || bits.OnesCount32(sb.inodeSize) != 1:
		return corrupt("inode size %d", sb.inodeSize)
	case sb.descSize < 32 || sb.descSize > 1024 || bits.OnesCount32(sb.descSize) != 1 ||
		(sb.incompat&incompat64Bit != 0 && sb.descSize < 64):
		return corrupt("group descriptor size %d", sb.descSize)
	case sb.blocksPerGroup == 0:
		return corrupt("0 blocks per group")
	case sb.inodesPerGroup == 0 || uint64(sb.inodesPerGroup) > 8*bs:
		return corrupt("%d inodes per group", sb.inodesPerGroup)
	case sb.inodesCount == 0:
		return corrupt("0 inodes")
	case uint64(sb.firstDataBlock) >= sb.blocksCount:
		return corrupt("first data block %d of %d", sb.firstDataBlock, sb.blocksCount)
	}
	groups := (sb.blocksCount-uint64(sb.firstDataBlock)-1)/uint64(sb.blocksPerGroup) + 1
	if groups > 1<<32-1 || uint64(sb.inodesCount) > groups*uint64(sb.inodesPerGroup) {
		return corrupt("%d inodes in %d groups of %d", sb.inodesCount, groups, sb.inodesPerGroup)
	}
	sb.groups = uint32(groups)
	return nil
}

// hasSuper reports whether a block group begins with a copy of the
// superblock and group descriptors.
func (sb *superblock) hasSuper(group uint32) bool {
	switch {
	case group == 0:
		return true
	case sb.compat&compatSparseSuper2 != 0:
		return group == sb.backupBGs[0] || group == sb.backupBGs[1]
	case group == 1 || sb.roCompat&roCompatSparseSuper == 0:
		return true
	case group%2 == 0:
		return false
	}
	return isPower(group, 3) || isPower(group, 5) || isPower(group, 7)
}

func isPower(n, base uint32) bool {
	p := uint64(base)
	for p < uint64(n) {
		p *= uint64(base)
	}
	return p == uint64(n)
}
