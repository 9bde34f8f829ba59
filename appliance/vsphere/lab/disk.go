package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/google/uuid"

	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// disk is one virtual disk of a lab VM, stored the way ESXi stores it: a
// flat file sized to the capacity (sparse), frozen when a snapshot is taken,
// with the writes made after the snapshot going to a delta file that is
// merged back when the snapshot is removed. A chain of snapshots is a chain
// of deltas; the last layer takes the guest's writes.
//
// It also keeps what Changed Block Tracking keeps: an epoch of written
// areas for every snapshot, named by a change ID "<uuid>/<seq>".
type disk struct {
	mu       sync.RWMutex
	key      int32 // device key in the VM's configuration
	capacity int64
	layers   []*layer

	cbtBlock int64 // granularity of the areas CBT reports
	cbt      *tracking
}

// layer is the base flat file or one snapshot's delta.
type layer struct {
	dsPath  string // "[LocalDS_0] vm01/vm01-000001.vmdk"
	path    string // the file on the lab's datastore directory
	f       *os.File
	written []diskmap.Area // normalized; for the base, the areas ever written
	// frozenBy is the snapshot that froze this layer, "" for the live one.
	frozenBy string
}

// tracking is the state of CBT on a disk since it was last enabled or reset.
type tracking struct {
	uuid    string
	seq     int                    // snapshots taken since tracking began
	pending []diskmap.Area         // written since the last snapshot
	epochs  map[int][]diskmap.Area // epoch n: written between snapshots n-1 and n
}

func newTracking() *tracking {
	return &tracking{uuid: uuid.NewString(), epochs: map[int][]diskmap.Area{}}
}

func (t *tracking) changeID(seq int) string { return fmt.Sprintf("%s/%d", t.uuid, seq) }

// openDisk opens (and sizes) the flat file of a disk.
func openDisk(key int32, dsPath, path string, capacity, cbtBlock int64) (*disk, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open disk %s: %w", dsPath, err)
	}
	if err := f.Truncate(capacity); err != nil {
		f.Close()
		return nil, fmt.Errorf("size disk %s: %w", dsPath, err)
	}
	return &disk{key: key, capacity: capacity, cbtBlock: cbtBlock,
		layers: []*layer{{dsPath: dsPath, path: path, f: f}}}, nil
}

func (d *disk) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.layers {
		l.f.Close()
	}
}

// write is a guest write: it lands in the live layer and is tracked.
func (d *disk) write(p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || off > d.capacity || int64(len(p)) > d.capacity-off {
		return fmt.Errorf("write of %d bytes at %d: beyond the disk's %d bytes", len(p), off, d.capacity)
	}
	if len(p) == 0 {
		return nil
	}
	top := d.layers[len(d.layers)-1]
	if _, err := top.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("write %s: %w", top.dsPath, err)
	}
	a := diskmap.Area{Offset: off, Length: int64(len(p))}
	top.written = addArea(top.written, a, d.capacity)
	if t := d.cbt; t != nil {
		t.pending = addArea(t.pending, d.alignBlock(a), d.capacity)
	}
	return nil
}

// alignBlock widens an area to CBT's blocks, as ESXi's tracking does.
func (d *disk) alignBlock(a diskmap.Area) diskmap.Area {
	start := a.Offset - a.Offset%d.cbtBlock
	end := a.End()
	if r := end % d.cbtBlock; r != 0 {
		end += d.cbtBlock - r
	}
	return diskmap.Area{Offset: start, Length: min(end, d.capacity) - start}
}

func addArea(areas []diskmap.Area, a diskmap.Area, size int64) []diskmap.Area {
	// Appending at the end is the common case (sequential writes); only an
	// out-of-order area pays for a full normalization.
	if n := len(areas); n == 0 || areas[n-1].End() < a.Offset {
		return append(areas, a)
	}
	return diskmap.Normalize(append(areas, a), size)
}

// readAt reads the disk as the snapshot frozen in layer top sees it, or as
// it is now with top = len(layers)-1.
func (d *disk) readAt(p []byte, off int64, top int) (int, error) {
	if off >= d.capacity {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > d.capacity-off {
		n = int(d.capacity - off)
	}
	p = p[:n]
	if _, err := d.layers[0].f.ReadAt(p, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read %s: %w", d.layers[0].dsPath, err)
	}
	for _, l := range d.layers[1 : top+1] {
		for i := diskmap.FindArea(l.written, off); i < len(l.written) && l.written[i].Offset < off+int64(n); i++ {
			a := l.written[i]
			from, to := max(a.Offset, off), min(a.End(), off+int64(n))
			if _, err := l.f.ReadAt(p[from-off:to-off], from); err != nil {
				return 0, fmt.Errorf("read %s: %w", l.dsPath, err)
			}
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// freeze takes a snapshot of the disk: the live layer is frozen and a new
// delta takes the writes. It returns the change ID of the frozen state, or ""
// when CBT is off.
func (d *disk) freeze(dsPath, path string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("create delta %s: %w", dsPath, err)
	}
	if err := f.Truncate(d.capacity); err != nil {
		f.Close()
		return "", fmt.Errorf("size delta %s: %w", dsPath, err)
	}
	// Marked with the snapshot's name once vcsim has made it; until then
	// the placeholder keeps the layer from passing for the live one.
	d.layers[len(d.layers)-1].frozenBy = "creating"
	d.layers = append(d.layers, &layer{dsPath: dsPath, path: path, f: f})
	t := d.cbt
	if t == nil {
		return "", nil
	}
	t.seq++
	t.epochs[t.seq] = t.pending
	t.pending = nil
	return t.changeID(t.seq), nil
}

// layerOf returns the layer that a snapshot froze, or -1.
func (d *disk) layerOf(snapshot string) int {
	for i, l := range d.layers {
		if l.frozenBy == snapshot {
			return i
		}
	}
	return -1
}

// consolidate removes a snapshot: the delta written after it is merged into
// the layer it froze, as ESXi does when a snapshot is deleted.
func (d *disk) consolidate(snapshot string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := d.layerOf(snapshot); i >= 0 {
		return d.mergeChild(i)
	}
	return nil
}

// thaw undoes a freeze whose snapshot could not be made.
func (d *disk) thaw(i int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mergeChild(i)
}

// mergeChild merges layer i+1 into layer i.
func (d *disk) mergeChild(i int) error {
	parent, child := d.layers[i], d.layers[i+1]
	buf := make([]byte, 1<<20)
	for _, a := range child.written {
		for off := a.Offset; off < a.End(); {
			n := min(int64(len(buf)), a.End()-off)
			if _, err := child.f.ReadAt(buf[:n], off); err != nil {
				return fmt.Errorf("consolidate %s: read: %w", child.dsPath, err)
			}
			if _, err := parent.f.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("consolidate into %s: %w", parent.dsPath, err)
			}
			off += n
		}
		parent.written = addArea(parent.written, a, d.capacity)
	}
	parent.frozenBy = child.frozenBy
	child.f.Close()
	if err := os.Remove(child.path); err != nil {
		return fmt.Errorf("consolidate: remove %s: %w", child.dsPath, err)
	}
	d.layers = append(d.layers[:i+1], d.layers[i+2:]...)
	return nil
}

// resize grows the disk; vSphere cannot shrink one. Tracking starts afresh,
// so every earlier change ID becomes unknown and the next backup reads the
// disk in full.
func (d *disk) resize(capacity int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if capacity == d.capacity {
		return nil
	}
	if capacity < d.capacity {
		return fmt.Errorf("disk %s: cannot shrink from %d to %d bytes", d.layers[0].dsPath, d.capacity, capacity)
	}
	for _, l := range d.layers {
		if err := l.f.Truncate(capacity); err != nil {
			return fmt.Errorf("grow %s: %w", l.dsPath, err)
		}
	}
	d.capacity = capacity
	if d.cbt != nil {
		d.cbt = newTracking()
	}
	return nil
}

// allocated returns the areas that hold data in a snapshot's view.
func (d *disk) allocated(top int) []diskmap.Area {
	var all []diskmap.Area
	for _, l := range d.layers[:top+1] {
		all = append(all, l.written...)
	}
	return diskmap.Normalize(all, d.capacity)
}

// resetCBT forgets all tracking: every earlier change ID becomes unknown.
func (d *disk) resetCBT(enabled bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cbt = nil
	if enabled {
		d.cbt = newTracking()
	}
}

// errUnknownChangeID is the lab's answer to a change ID it cannot compare.
var errUnknownChangeID = errors.New("unknown change ID")

// changedSince returns the areas written between the state named by changeID
// and the state frozen at snapshot seq.
func (d *disk) changedSince(changeID string, seq int) ([]diskmap.Area, error) {
	t := d.cbt
	if t == nil {
		return nil, errors.New("change tracking is not enabled on the disk")
	}
	var id string
	var n int
	if _, err := fmt.Sscanf(changeID, "%36s/%d", &id, &n); err != nil || id != t.uuid || n < 0 || n > seq {
		return nil, fmt.Errorf("%w %q", errUnknownChangeID, changeID)
	}
	var out []diskmap.Area
	for e := n + 1; e <= seq; e++ {
		out = append(out, t.epochs[e]...)
	}
	return diskmap.Normalize(out, d.capacity), nil
}
