package partition_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/fstree/fstreetest"
	"github.com/bulwarkbackup/bulwark/restore/partition"
)

const mib = 1 << 20

// image makes a sparse disk image of the given size.
func image(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// loop attaches an image to a loop device of the given sector size.
func loop(t testing.TB, img string, sectorSize int) string {
	t.Helper()
	dev := strings.TrimSpace(fstreetest.Run(t, "losetup", "-b", strconv.Itoa(sectorSize), "-f", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

func readTable(t *testing.T, img string) *partition.Table {
	t.Helper()
	b := fstreetest.ReadImage(t, img)
	tab, err := partition.Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return tab
}

// sfdiskTable is what sfdisk --json says of a disk.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string
		ID         string
		SectorSize int
		Partitions []struct {
			Node        string
			Start, Size int64
			Type        string
			UUID        string
			Name        string
			Attrs       string
		}
	}
}

func sfdiskJSON(t *testing.T, dev string) sfdiskTable {
	t.Helper()
	out, err := exec.Command("/usr/sbin/sfdisk", "--json", dev).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", dev, err)
	}
	var st sfdiskTable
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	return st
}

// partNumber is the number at the end of a partition's device node.
func partNumber(node string) int {
	i := len(node)
	for i > 0 && node[i-1] >= '0' && node[i-1] <= '9' {
		i--
	}
	n, _ := strconv.Atoi(node[i:])
	return n
}

// checkSfdisk compares a table with what sfdisk reads on the same disk.
func checkSfdisk(t *testing.T, tab *partition.Table, st sfdiskTable) {
	t.Helper()
	pt := st.PartitionTable
	if pt.SectorSize != tab.SectorSize {
		t.Errorf("sector size %d, sfdisk says %d", tab.SectorSize, pt.SectorSize)
	}
	if len(pt.Partitions) != len(tab.Partitions) {
		t.Fatalf("%d partitions, sfdisk says %d: %+v", len(tab.Partitions), len(pt.Partitions), tab.Partitions)
	}
	ss := int64(pt.SectorSize)
	for i, w := range pt.Partitions {
		g := tab.Partitions[i]
		if g.Number != partNumber(w.Node) || g.Start != w.Start*ss || g.Length != w.Size*ss {
			t.Errorf("partition %d at %d+%d, sfdisk says %s at %d+%d", g.Number, g.Start, g.Length, w.Node, w.Start*ss, w.Size*ss)
		}
		switch tab.Kind {
		case partition.KindGPT:
			if g.Type != w.Type || g.GUID != w.UUID || g.Name != w.Name {
				t.Errorf("partition %d: type %s guid %s name %q, sfdisk says %s %s %q", g.Number, g.Type, g.GUID, g.Name, w.Type, w.UUID, w.Name)
			}
		case partition.KindMBR:
			if wt, _ := strconv.ParseUint(w.Type, 16, 8); g.Type != fmt.Sprintf("%02x", wt) {
				t.Errorf("partition %d: type %s, sfdisk says %s", g.Number, g.Type, w.Type)
			}
		}
	}
	switch tab.Kind {
	case partition.KindGPT:
		if pt.Label != "gpt" || tab.DiskGUID != pt.ID {
			t.Errorf("disk GUID %s, sfdisk says %s %s", tab.DiskGUID, pt.Label, pt.ID)
		}
	case partition.KindMBR:
		if pt.Label != "dos" || fmt.Sprintf("0x%08x", tab.DiskID) != pt.ID {
			t.Errorf("disk ID %08x, sfdisk says %s %s", tab.DiskID, pt.Label, pt.ID)
		}
	}
}

type gptWant struct {
	num              int
	start, length    int64 // sectors
	code, typ, tname string
	name, guid       string
}

var gptParts = []gptWant{
	{1, 2048, 16384, "ef00", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System", "EFI system", "11111111-2222-4333-8444-555555555501"},
	{2, 18432, 32768, "8300", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem", "root", "11111111-2222-4333-8444-555555555502"},
	{3, 51200, 16384, "8e00", "E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM", "lvm pv", "11111111-2222-4333-8444-555555555503"},
	{5, 67584, 8192, "8200", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap", "swap", "11111111-2222-4333-8444-555555555505"},
	{7, 75776, 8192, "0700", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Microsoft basic data", "Données ☃", "11111111-2222-4333-8444-555555555507"},
}

const diskGUID = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"

// makeGPT partitions dev with sgdisk; the sector numbers of gptParts are
// in 512-byte sectors and are divided for 4096-byte ones.
func makeGPT(t testing.TB, dev string, ss int64) {
	args := []string{"-o", "-U", diskGUID}
	for _, p := range gptParts {
		k := 512 / float64(ss)
		first := int64(float64(p.start) * k)
		last := first + int64(float64(p.length)*k) - 1
		args = append(args,
			fmt.Sprintf("-n%d:%d:%d", p.num, first, last),
			fmt.Sprintf("-t%d:%s", p.num, p.code),
			fmt.Sprintf("-c%d:%s", p.num, p.name),
			fmt.Sprintf("-u%d:%s", p.num, p.guid))
	}
	fstreetest.Run(t, "sgdisk", append(args, dev)...)
}

func checkGPT(t *testing.T, tab *partition.Table, ss int64) {
	t.Helper()
	if tab.Kind != partition.KindGPT || tab.SectorSize != int(ss) || tab.DiskGUID != diskGUID {
		t.Errorf("table %s, %d-byte sectors, disk %s; want gpt, %d, %s", tab.Kind, tab.SectorSize, tab.DiskGUID, ss, diskGUID)
	}
	if len(tab.Partitions) != len(gptParts) {
		t.Fatalf("%d partitions, want %d", len(tab.Partitions), len(gptParts))
	}
	for i, w := range gptParts {
		g := tab.Partitions[i]
		if g.Number != w.num || g.Start != w.start*512 || g.Length != w.length*512 ||
			g.Type != w.typ || g.TypeName != w.tname || g.Name != w.name || g.GUID != w.guid {
			t.Errorf("partition %+v, want %+v", g, w)
		}
	}
}

func TestGPT(t *testing.T) {
	img := image(t, 64*mib)
	makeGPT(t, img, 512)
	tab := readTable(t, img)
	checkGPT(t, tab, 512)
	if tab.Warning != "" {
		t.Errorf("warning %q", tab.Warning)
	}
	checkSfdisk(t, tab, sfdiskJSON(t, img))
	// sgdisk -i says the same of each partition.
	for _, p := range tab.Partitions {
		out := fstreetest.Run(t, "sgdisk", "-i", strconv.Itoa(p.Number), img)
		for _, want := range []string{
			"Partition GUID code: " + p.Type,
			"Partition unique GUID: " + p.GUID,
			fmt.Sprintf("First sector: %d ", p.Start/512),
			fmt.Sprintf("Last sector: %d ", (p.Start+p.Length)/512-1),
			fmt.Sprintf("Partition name: '%s'", p.Name),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("sgdisk -i %d says\n%s\nnot %q", p.Number, out, want)
			}
		}
	}
}

func TestGPT4096(t *testing.T) {
	img := image(t, 64*mib)
	makeGPT(t, loop(t, img, 4096), 4096)
	tab := readTable(t, img)
	checkGPT(t, tab, 4096)
	b := fstreetest.ReadImage(t, img)
	if _, err := partition.ReadSectorSize(bytes.NewReader(b), int64(len(b)), 512); err == nil {
		t.Errorf("a 4096-byte-sector GPT read with 512-byte sectors: no error")
	}
}

// TestGPTBackup damages the primary GPT in each way a disk may and expects
// the backup to be used, with a warning.
func TestGPTBackup(t *testing.T) {
	img := image(t, 64*mib)
	makeGPT(t, img, 512)
	orig := fstreetest.ReadImage(t, img)
	for _, tc := range []struct {
		name   string
		damage func(b []byte)
		warn   string
	}{
		{"header crc", func(b []byte) { b[512+40]++ }, "primary GPT damaged"},
		{"entry array", func(b []byte) { b[1024+56] ^= 0xFF }, "entry array CRC32"},
		{"header zeroed", func(b []byte) { clear(b[512:1024]) }, "no primary GPT header"},
		{"no MBR either", func(b []byte) { clear(b[:1024]) }, "no protective MBR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			tc.damage(b)
			tab, err := partition.Read(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			checkGPT(t, tab, 512)
			if !strings.Contains(tab.Warning, tc.warn) {
				t.Errorf("warning %q, want %q", tab.Warning, tc.warn)
			}
		})
	}
	// Both copies damaged: corrupt.
	b := bytes.Clone(orig)
	b[512+40]++
	b[len(b)-512+40]++
	if _, err := partition.Read(bytes.NewReader(b), int64(len(b))); !errors.Is(err, fstree.ErrCorrupt) {
		t.Errorf("both headers damaged: %v, want ErrCorrupt", err)
	}
}

// mbrScript is the layout sfdisk is told: 3 primaries, an extended
// partition with 3 logical ones. In MiB, it gives the same bytes on disks
// of 512- and 4096-byte sectors.
const mbrScript = `label: dos
label-id: 0x1234abcd
start=1MiB, size=8MiB, type=83, bootable
size=8MiB, type=8e
size=4MiB, type=82
type=5
size=4MiB, type=83
size=4MiB, type=7
size=4MiB, type=c
`

type mbrWant struct {
	num           int
	start, length int64 // in 512-byte units, whatever the sector size
	typ, tname    string
}

var mbrParts = []mbrWant{
	{1, 2048, 16384, "83", "Linux filesystem"},
	{2, 18432, 16384, "8e", "Linux LVM"},
	{3, 34816, 8192, "82", "Linux swap"},
	{4, 43008, 88064, "05", "extended"},
	{5, 45056, 8192, "83", "Linux filesystem"},
	{6, 55296, 8192, "07", "HPFS/NTFS/exFAT"},
	{7, 65536, 8192, "0c", "W95 FAT32 (LBA)"},
}

func makeMBR(t testing.TB, dev string) {
	cmd := exec.Command("/usr/sbin/sfdisk", "--no-reread", "--no-tell-kernel", dev)
	cmd.Stdin = strings.NewReader(mbrScript)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
}

func checkMBR(t *testing.T, tab *partition.Table, ss int64) {
	t.Helper()
	if tab.Kind != partition.KindMBR || tab.SectorSize != int(ss) || tab.DiskID != 0x1234abcd || tab.Warning != "" {
		t.Errorf("table %s, %d-byte sectors, disk %08x, warning %q", tab.Kind, tab.SectorSize, tab.DiskID, tab.Warning)
	}
	if len(tab.Partitions) != len(mbrParts) {
		t.Fatalf("%d partitions, want %d: %+v", len(tab.Partitions), len(mbrParts), tab.Partitions)
	}
	for i, w := range mbrParts {
		g := tab.Partitions[i]
		if g.Number != w.num || g.Start != w.start*512 || g.Type != w.typ || g.TypeName != w.tname ||
			g.Extended != (w.typ == "05") || g.Bootable != (w.num == 1) {
			t.Errorf("partition %+v, want %+v", g, w)
		}
		if g.Length != w.length*512 {
			t.Errorf("partition %d: length %d, want %d", g.Number, g.Length, w.length*512)
		}
	}
}

func TestMBR(t *testing.T) {
	img := image(t, 64*mib)
	makeMBR(t, img)
	tab := readTable(t, img)
	checkMBR(t, tab, 512)
	checkSfdisk(t, tab, sfdiskJSON(t, img))
}

func TestMBR4096(t *testing.T) {
	img := image(t, 64*mib)
	dev := loop(t, img, 4096)
	makeMBR(t, dev)
	st := sfdiskJSON(t, dev)
	// Only the chain of extended boot records says that the sectors are
	// 4096 bytes: Read finds it there.
	tab := readTable(t, img)
	checkMBR(t, tab, 4096)
	checkSfdisk(t, tab, st)
	b := fstreetest.ReadImage(t, img)
	tab, err := partition.ReadSectorSize(bytes.NewReader(b), int64(len(b)), 4096)
	if err != nil {
		t.Fatal(err)
	}
	checkSfdisk(t, tab, st)
}

func TestNone(t *testing.T) {
	for _, size := range []int64{0, 100, 512, 64 * mib} {
		b := make([]byte, size)
		tab, err := partition.Read(bytes.NewReader(b), size)
		if err != nil || tab.Kind != partition.KindNone || len(tab.Partitions) != 0 {
			t.Errorf("%d zero bytes: %+v, %v", size, tab, err)
		}
	}
	// A filesystem's boot sector ends with 0x55AA too, but its code
	// where the partition slots would be is no table.
	img := image(t, 8*mib)
	fstreetest.Run(t, "mkfs.vfat", "-I", img)
	if tab := readTable(t, img); tab.Kind != partition.KindNone {
		t.Errorf("FAT boot sector read as %+v", tab)
	}
}

// Hostile tables.

func corruptRead(t *testing.T, b []byte, size int64) {
	t.Helper()
	tab, err := partition.Read(bytes.NewReader(b), size)
	if !errors.Is(err, fstree.ErrCorrupt) {
		t.Errorf("Read: %+v, %v; want ErrCorrupt", tab, err)
	}
}

func TestHostileMBR(t *testing.T) {
	img := image(t, 64*mib)
	makeMBR(t, img)
	orig := fstreetest.ReadImage(t, img)
	le := binary.LittleEndian
	ebr := func(b []byte, lba int64) []byte { return b[lba*512+446:] }

	t.Run("beyond the disk", func(t *testing.T) {
		b := bytes.Clone(orig)
		le.PutUint32(b[446+16+12:], 1<<30) // partition 2's length
		corruptRead(t, b, int64(len(b)))
	})
	t.Run("disk truncated", func(t *testing.T) {
		corruptRead(t, orig[:40*mib], 40*mib)
	})
	t.Run("EBR chain loop", func(t *testing.T) {
		b := bytes.Clone(orig)
		// The third EBR, at the end of the chain, links back to the
		// second, then to the first.
		link := ebr(b, 65536-2048)[16:]
		link[4] = 5
		le.PutUint32(link[8:], 53248-43008)
		le.PutUint32(link[12:], 1)
		corruptRead(t, b, int64(len(b)))
		le.PutUint32(link[8:], 0)
		corruptRead(t, b, int64(len(b)))
	})
	t.Run("EBR self loop", func(t *testing.T) {
		b := bytes.Clone(orig)
		le.PutUint32(ebr(b, 55296-2048)[16+8:], 55296-2048-43008)
		corruptRead(t, b, int64(len(b)))
	})
	t.Run("logical outside extended", func(t *testing.T) {
		b := bytes.Clone(orig)
		le.PutUint32(ebr(b, 45056-2048)[12:], 1<<20)
		corruptRead(t, b, int64(len(b)))
	})
	t.Run("EBR without signature", func(t *testing.T) {
		b := bytes.Clone(orig)
		b[(55296-2048)*512+510] = 0
		corruptRead(t, b, int64(len(b)))
	})
	t.Run("long chain", func(t *testing.T) {
		// 300 boot records, each linking to the next: more than Linux
		// would number.
		b := make([]byte, 1*mib)
		copy(b, orig[:512])
		le.PutUint32(b[446+16*3+8:], 1)    // extended partition at sector 1
		le.PutUint32(b[446+16*3+12:], 400) // of 400 sectors
		clear(b[446 : 446+48])
		for i := int64(1); i <= 300; i++ {
			e := b[i*512:]
			e[510], e[511] = 0x55, 0xAA
			e[446+16+4] = 5
			le.PutUint32(e[446+16+8:], uint32(i))
			le.PutUint32(e[446+16+12:], 1)
		}
		corruptRead(t, b, int64(len(b)))
	})
}

// fixGPT recomputes the CRCs of the GPT header at lba, 512-byte sectors.
func fixGPT(b []byte, lba int64) {
	le := binary.LittleEndian
	h := b[lba*512:][:92]
	n, size := int64(le.Uint32(h[80:])), int64(le.Uint32(h[84:]))
	if arr := int64(le.Uint64(h[72:])) * 512; arr+n*size <= int64(len(b)) {
		le.PutUint32(h[88:], crc32.ChecksumIEEE(b[arr:arr+n*size]))
	}
	le.PutUint32(h[16:], 0)
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h))
}

func TestHostileGPT(t *testing.T) {
	img := image(t, 64*mib)
	makeGPT(t, img, 512)
	orig := fstreetest.ReadImage(t, img)
	le := binary.LittleEndian
	last := int64(len(orig)/512 - 1)
	// both applies a change to the primary and the backup header, so
	// that no copy is left to fall back to.
	both := func(b []byte, f func(h []byte)) {
		for _, lba := range []int64{1, last} {
			f(b[lba*512:])
			fixGPT(b, lba)
		}
	}
	for _, tc := range []struct {
		name string
		f    func(h []byte)
	}{
		{"absurd entry count", func(h []byte) { le.PutUint32(h[80:], 1<<31) }},
		{"absurd entry size", func(h []byte) { le.PutUint32(h[84:], 1<<30) }},
		{"tiny entry size", func(h []byte) { le.PutUint32(h[84:], 16) }},
		{"entries beyond disk", func(h []byte) { le.PutUint64(h[72:], 1<<40) }},
		{"usable beyond disk", func(h []byte) { le.PutUint64(h[48:], 1<<40) }},
		{"header size", func(h []byte) { le.PutUint32(h[12:], 1<<20) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			both(b, tc.f)
			corruptRead(t, b, int64(len(b)))
		})
	}
	t.Run("partition beyond disk", func(t *testing.T) {
		b := bytes.Clone(orig)
		for _, lba := range []int64{1, last} {
			arr := int64(le.Uint64(b[lba*512+72:])) * 512
			le.PutUint64(b[arr+128+40:], 1<<40) // partition 2's last sector
			fixGPT(b, lba)
		}
		corruptRead(t, b, int64(len(b)))
	})
	t.Run("protective MBR alone", func(t *testing.T) {
		b := bytes.Clone(orig)
		clear(b[512:1024])
		clear(b[len(b)-512:])
		corruptRead(t, b, int64(len(b)))
	})
}
