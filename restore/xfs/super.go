package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

const sbMagic = 0x58465342 // "XFSB"

// sb_versionnum bits.
const (
	versionNumMask  = 0x000f
	versionDirV2    = 0x2000
	versionBorg     = 0x4000 // ASCII case-insensitive names
	versionMoreBits = 0x8000
)

// sb_features2 bits (version 4; mirrored in version 5).
const features2FType = 0x200

// sb_features_incompat bits (version 5).
const (
	incompatFType       = 0x01
	incompatSparseInode = 0x02
	incompatMetaUUID    = 0x04
	incompatBigtime     = 0x08
	incompatNeedsRepair = 0x10
	incompatNrext64     = 0x20
	incompatExchange    = 0x40
	incompatParent      = 0x80
	// Features that change nothing this reader looks at: sparse inode
	// chunks are found by inode number like any other, the meta UUID is
	// only checked by CRC verifiers, exchange-range and parent pointers
	// live in log items and extended attributes.
	incompatKnown = incompatFType | incompatSparseInode | incompatMetaUUID |
		incompatBigtime | incompatNeedsRepair | incompatNrext64 |
		incompatExchange | incompatParent
)

// super is the geometry of a filesystem, from its primary superblock.
type super struct {
	blockSize uint32
	blockLog  uint
	dblocks   uint64
	agBlocks  uint32
	agCount   uint32
	agBlkLog  uint
	inodeSize uint32
	inodeLog  uint
	inoPBLog  uint
	rootIno   uint64
	dirBlkLog uint // directory block = blockSize << dirBlkLog
	v5        bool
	ftype     bool // directory entries record the file type
	nrext64   bool
	asciiCI   bool
	label     string
}

// parseSuper checks a superblock and the volume size against each other.
func parseSuper(b []byte, size int64) (*super, error) {
	be := binary.BigEndian
	if len(b) < 264 || be.Uint32(b) != sbMagic {
		return nil, fmt.Errorf("xfs: no superblock magic: %w", fstree.ErrUnrecognized)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("xfs superblock: %s: %w", fmt.Sprintf(format, args...), fstree.ErrCorrupt)
	}
	s := &super{
		blockSize: be.Uint32(b[4:]),
		dblocks:   be.Uint64(b[8:]),
		rootIno:   be.Uint64(b[56:]),
		agBlocks:  be.Uint32(b[84:]),
		agCount:   be.Uint32(b[88:]),
		inodeSize: uint32(be.Uint16(b[104:])),
		blockLog:  uint(b[120]),
		inodeLog:  uint(b[122]),
		inoPBLog:  uint(b[123]),
		agBlkLog:  uint(b[124]),
		dirBlkLog: uint(b[192]),
		label:     string(bytes.TrimRight(b[108:120], "\x00")),
	}
	version := be.Uint16(b[100:])
	switch version & versionNumMask {
	case 4:
		if version&versionDirV2 == 0 {
			return nil, errors.New("xfs: version 1 directories are not supported")
		}
		if version&versionMoreBits != 0 {
			s.ftype = be.Uint32(b[200:])&features2FType != 0
		}
	case 5:
		s.v5 = true
		incompat := be.Uint32(b[216:])
		if incompat&incompatNeedsRepair != 0 {
			return nil, fmt.Errorf("xfs superblock: filesystem is marked as needing xfs_repair: %w", fstree.ErrCorrupt)
		}
		if unknown := incompat &^ incompatKnown; unknown != 0 {
			return nil, fmt.Errorf("xfs: unsupported incompatible features %#x", unknown)
		}
		s.ftype = incompat&incompatFType != 0
		s.nrext64 = incompat&incompatNrext64 != 0
	default:
		return nil, fmt.Errorf("xfs: unsupported superblock version %d", version&versionNumMask)
	}
	s.asciiCI = version&versionBorg != 0

	switch {
	case s.blockSize < 512 || s.blockSize > 65536 || s.blockSize != 1<<s.blockLog:
		return nil, corrupt("block size %d, log %d", s.blockSize, s.blockLog)
	case s.inodeSize < 256 || s.inodeSize > 2048 || s.inodeSize != 1<<s.inodeLog || s.inodeSize > s.blockSize:
		return nil, corrupt("inode size %d, log %d", s.inodeSize, s.inodeLog)
	case s.v5 && s.inodeSize < 512:
		return nil, corrupt("version 5 inode size %d", s.inodeSize)
	case s.inoPBLog != s.blockLog-s.inodeLog:
		return nil, corrupt("%d inodes per block (log), want %d", s.inoPBLog, s.blockLog-s.inodeLog)
	case s.agBlocks < 1 || s.agBlkLog != uint(bits.Len32(s.agBlocks-1)):
		return nil, corrupt("allocation group of %d blocks, log %d", s.agBlocks, s.agBlkLog)
	case s.agCount < 1:
		return nil, corrupt("no allocation groups")
	case s.dblocks == 0 || s.dblocks > uint64(s.agCount)*uint64(s.agBlocks) ||
		s.dblocks <= uint64(s.agCount-1)*uint64(s.agBlocks):
		return nil, corrupt("%d blocks in %d groups of %d", s.dblocks, s.agCount, s.agBlocks)
	case s.blockLog+s.dirBlkLog > 16:
		return nil, corrupt("directory block log %d", s.dirBlkLog)
	}
	if s.dblocks > uint64(size)>>s.blockLog {
		return nil, corrupt("%d blocks of %d bytes on a volume of %d bytes", s.dblocks, s.blockSize, size)
	}
	if _, err := s.inodeOffset(s.rootIno); err != nil {
		return nil, fmt.Errorf("xfs superblock: root: %w", err)
	}
	return s, nil
}

// inodeOffset returns the volume offset of an inode. An inode number is
// the allocation group, the block in the group and the inode in the block,
// packed with as many bits as the geometry needs for each.
func (s *super) inodeOffset(ino uint64) (int64, error) {
	agno := ino >> (s.agBlkLog + s.inoPBLog)
	agbno := ino >> s.inoPBLog & (1<<s.agBlkLog - 1)
	idx := ino & (1<<s.inoPBLog - 1)
	if agno >= uint64(s.agCount) || agbno >= uint64(s.agBlocks) {
		return 0, fmt.Errorf("inode number %d (group %d, block %d) outside the filesystem: %w", ino, agno, agbno, fstree.ErrCorrupt)
	}
	block := agno*uint64(s.agBlocks) + agbno
	if block >= s.dblocks {
		return 0, fmt.Errorf("inode number %d in block %d past the end: %w", ino, block, fstree.ErrCorrupt)
	}
	return int64(block<<s.blockLog | idx<<s.inodeLog), nil
}

// blockOffset returns the volume offset of count blocks starting at the
// filesystem block number fsb, which like an inode number packs the group
// in its high bits. An extent never crosses a group.
func (s *super) blockOffset(fsb, count uint64) (int64, error) {
	agno := fsb >> s.agBlkLog
	agbno := fsb & (1<<s.agBlkLog - 1)
	if agno >= uint64(s.agCount) || agbno+count > uint64(s.agBlocks) {
		return 0, fmt.Errorf("blocks %d+%d (group %d, block %d) outside their group: %w", fsb, count, agno, agbno, fstree.ErrCorrupt)
	}
	block := agno*uint64(s.agBlocks) + agbno
	if block+count > s.dblocks {
		return 0, fmt.Errorf("blocks %d+%d past the end: %w", fsb, count, fstree.ErrCorrupt)
	}
	return int64(block << s.blockLog), nil
}

// dirBlockSize is the size of a directory block in bytes.
func (s *super) dirBlockSize() int { return int(s.blockSize) << s.dirBlkLog }

// bytes converts a count of blocks to bytes, saturating at 1<<63: extent
// offsets have more bits than file offsets.
func (s *super) bytes(blocks uint64) uint64 {
	if blocks >= 1<<(63-s.blockLog) {
		return 1 << 63
	}
	return blocks << s.blockLog
}
