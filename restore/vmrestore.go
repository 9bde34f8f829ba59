package restore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// Transport names how disks are written.
const (
	// TransportHTTP uploads whole disks over the datastore HTTP interface.
	TransportHTTP = "http"
	// TransportHotAdd attaches disks to the appliance VM and writes only
	// what holds data (new VMs) or what differs (over the original).
	TransportHotAdd = "hotadd"
)

// Options shape a restore.
type Options struct {
	// Transport for new disks: TransportHTTP (default) or TransportHotAdd.
	// A restore over the original always writes through hot-add.
	Transport string
	// Progress, if set, is called as each disk is written (or, when
	// comparing by hash, read).
	Progress func(disk int, done, total int64)
	Log      *slog.Logger
}

func (o *Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

func (o *Options) progress(disk int) func(done, total int64) {
	if o.Progress == nil {
		return nil
	}
	return func(done, total int64) { o.Progress(disk, done, total) }
}

// Result is what a restore did.
type Result struct {
	VM    string       `json:"vm"`
	MoRef string       `json:"moref"`
	Point string       `json:"point"`
	Disks []DiskResult `json:"disks"`
}

// DiskResult is what a restore wrote to one disk.
type DiskResult struct {
	Index int `json:"index"`
	// Method says how the blocks to write were chosen: "all" (a new
	// disk), "cbt" or "hash".
	Method string `json:"method"`
	// Why CBT could not be used, for "hash".
	Reason       string  `json:"reason,omitempty"`
	Differing    int64   `json:"differing_bytes"` // bytes found to differ
	BytesWritten int64   `json:"bytes_written"`
	Seconds      float64 `json:"seconds"`
}

// ToNewVM restores a point as a new VM: created from the point's
// configuration, every disk written, thin disks' zero areas skipped where
// the transport allows. A VM left half-restored by a failure is destroyed.
func ToNewVM(ctx context.Context, store *chunkstore.Store, point blob.ID, h Hypervisor, spec NewVM, o Options) (res *Result, err error) {
	p, err := store.LoadPoint(ctx, point)
	if err != nil {
		return nil, err
	}
	if len(p.VMConfig) == 0 {
		return nil, fmt.Errorf("point %s holds no VM configuration (an image backup?): restore its disks instead", point.Short())
	}
	var capacities []int64
	for _, d := range p.Disks {
		capacities = append(capacities, d.Capacity)
	}
	vm, err := h.CreateVM(ctx, p.VMConfig, capacities, spec)
	if err != nil {
		if vm != nil {
			err = errors.Join(err, destroy(vm))
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, destroy(vm))
		}
	}()
	res = &Result{VM: vm.Name(), MoRef: vm.Ref(), Point: point.String()}
	for i := range p.Disks {
		d, err := writeDisk(ctx, store, point, i, vm, i, o)
		if err != nil {
			return nil, err
		}
		res.Disks = append(res.Disks, d)
	}
	note := fmt.Sprintf("Restored by Bulwark on %s from point %s of %s, taken %s.", time.Now().UTC().Format(time.RFC3339),
		point.Short(), p.Source.VMName, p.Time.UTC().Format(time.RFC3339))
	if err := vm.Annotate(ctx, note); err != nil {
		return nil, err
	}
	if spec.PowerOn {
		if err := vm.PowerOn(ctx); err != nil {
			return nil, err
		}
	}
	o.log().Info("restored to a new VM", "vm", vm.Name(), "point", point.Short())
	return res, nil
}

// destroy removes a VM that a failed restore made, even when the restore
// was cancelled.
func destroy(vm VM) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if off, err := vm.PoweredOff(ctx); err == nil && !off {
		_ = vm.PowerOff(ctx)
	}
	if err := vm.Destroy(ctx); err != nil {
		return fmt.Errorf("remove the half-restored VM %s: %w", vm.Name(), err)
	}
	return nil
}

// writeDisk writes disk from of a point, whole, to disk i of a VM, new and
// empty.
func writeDisk(ctx context.Context, store *chunkstore.Store, point blob.ID, from int, vm VM, i int, o Options) (DiskResult, error) {
	start := time.Now()
	res := DiskResult{Index: i, Method: "all"}
	switch o.Transport {
	case "", TransportHTTP:
		r, err := store.OpenDisk(ctx, point, from)
		if err != nil {
			return res, err
		}
		var sent atomic.Int64
		progress := o.progress(i)
		err = vm.Upload(ctx, i, stream(r), r.Size(), func(n int64) {
			if done := sent.Add(n); progress != nil {
				progress(done, r.Size())
			}
		})
		if err != nil {
			return res, fmt.Errorf("disk %d: %w", i, err)
		}
		res.BytesWritten = sent.Load()
	case TransportHotAdd:
		d, err := vm.OpenDisk(ctx, i)
		if err != nil {
			return res, fmt.Errorf("disk %d: %w", i, err)
		}
		w := &countingWriter{w: d}
		// The new disk is thin and reads zero: only data is written.
		err = store.RestoreDisk(ctx, point, from, w, chunkstore.RestoreOptions{Sparse: true, Progress: o.progress(i)})
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return res, fmt.Errorf("disk %d: %w", i, err)
		}
		res.BytesWritten = w.n.Load()
	default:
		return res, fmt.Errorf("transport %q: %s or %s", o.Transport, TransportHTTP, TransportHotAdd)
	}
	res.Differing = res.BytesWritten
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// stream reads a disk of a point from start to end in large reads, for an
// upload: the HTTP client would otherwise ask for 32 KiB at a time, each a
// lookup in the disk's map.
func stream(r *chunkstore.DiskReader) io.Reader {
	return bufio.NewReaderSize(io.NewSectionReader(r, 0, r.Size()), 4<<20)
}

type countingWriter struct {
	w io.WriterAt
	n atomic.Int64
}

func (c *countingWriter) WriteAt(p []byte, off int64) (int, error) {
	n, err := c.w.WriteAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// OverOriginal restores a point over the VM it was taken of, which must be
// powered off, writing only the blocks that differ: those CBT reports
// changed since the point's change ID, or, when CBT cannot say, those a
// comparison by hash finds. Change tracking is then reset, so the next
// backup reads the disks whole. vm is a name, moref or instance UUID; empty
// means the point's own VM.
func OverOriginal(ctx context.Context, store *chunkstore.Store, point blob.ID, h Hypervisor, ref string, o Options) (*Result, error) {
	p, err := store.LoadPoint(ctx, point)
	if err != nil {
		return nil, err
	}
	if ref == "" {
		ref = p.Source.VMUUID
	}
	if ref == "" {
		return nil, fmt.Errorf("point %s names no VM: name the VM to restore over", point.Short())
	}
	vm, err := h.FindVM(ctx, ref)
	if err != nil {
		return nil, err
	}
	off, err := vm.PoweredOff(ctx)
	if err != nil {
		return nil, err
	}
	if !off {
		return nil, fmt.Errorf("restore over %s: %w", vm.Name(), ErrPoweredOn)
	}
	now := vm.Disks()
	if len(now) != len(p.Disks) {
		return nil, fmt.Errorf("%s has %d disks, the point %d: restore to a new VM, or restore single disks", vm.Name(), len(now), len(p.Disks))
	}
	for i, d := range p.Disks {
		if now[i] != d.Capacity {
			return nil, fmt.Errorf("disk %d of %s has %d bytes, the point's %d: restore to a new VM, or restore single disks", i, vm.Name(), now[i], d.Capacity)
		}
	}
	res := &Result{VM: vm.Name(), MoRef: vm.Ref(), Point: point.String()}
	// Ask CBT about every disk first: its answers are needed before
	// tracking is turned off.
	changed := make([][]diskmap.Area, len(p.Disks))
	cbtErrs := make([]error, len(p.Disks))
	for i, d := range p.Disks {
		if d.ChangeID == "" {
			cbtErrs[i] = errors.New("the point has no change ID")
			continue
		}
		changed[i], cbtErrs[i] = vm.ChangedAreas(ctx, i, d.ChangeID)
		if cbtErrs[i] != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	// Tracking is off while the disks are written and on again after: a
	// restore killed half-way leaves it off, and the next backup, which
	// turns it on, reads the disks whole rather than trusting change IDs
	// from before writes CBT may not have seen.
	if err := vm.SetChangeTracking(ctx, false); err != nil {
		return nil, err
	}
	for i := range p.Disks {
		d, err := overDisk(ctx, store, p, vm, i, changed[i], cbtErrs[i], o)
		if err != nil {
			return res, err
		}
		res.Disks = append(res.Disks, d)
	}
	if err := vm.SetChangeTracking(ctx, true); err != nil {
		return res, err
	}
	o.log().Info("restored over the original VM", "vm", vm.Name(), "point", point.Short())
	return res, nil
}

// overDisk writes to one disk what differs from the point: the areas CBT
// reported, or, when cbtErr says it could not, those a comparison by hash
// finds.
func overDisk(ctx context.Context, store *chunkstore.Store, p *chunkstore.Point, vm VM, i int, areas []diskmap.Area, cbtErr error, o Options) (DiskResult, error) {
	start := time.Now()
	res := DiskResult{Index: i, Method: "cbt"}
	d, err := vm.OpenDisk(ctx, i)
	if err != nil {
		return res, fmt.Errorf("disk %d: %w", i, err)
	}
	if cbtErr != nil {
		res.Method, res.Reason = "hash", cbtErr.Error()
		o.log().Info("comparing by hash", "vm", vm.Name(), "disk", i, "why", cbtErr)
		areas, err = store.DiffDisk(ctx, p.ID, i, d, o.progress(i))
	}
	for _, a := range areas {
		res.Differing += a.Length
	}
	w := &countingWriter{w: d}
	if err == nil && len(areas) > 0 {
		err = store.RestoreDisk(ctx, p.ID, i, w, chunkstore.RestoreOptions{Areas: areas, Progress: o.progress(i)})
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	res.BytesWritten = w.n.Load()
	res.Seconds = time.Since(start).Seconds()
	if err != nil {
		return res, fmt.Errorf("disk %d: %w", i, err)
	}
	return res, nil
}

// DiskToVM restores one disk of a point as a new disk of an existing VM,
// on a datastore (the VM's own when empty). The VM may be running when
// the disk is uploaded over HTTP; hot-add writes a disk of a powered-off
// VM only.
func DiskToVM(ctx context.Context, store *chunkstore.Store, point blob.ID, disk int, h Hypervisor, ref, datastore string, o Options) (*Result, error) {
	p, err := store.LoadPoint(ctx, point)
	if err != nil {
		return nil, err
	}
	d, err := p.Disk(disk)
	if err != nil {
		return nil, err
	}
	vm, err := h.FindVM(ctx, ref)
	if err != nil {
		return nil, err
	}
	i, err := vm.AddDisk(ctx, d.Capacity, datastore)
	if err != nil {
		return nil, err
	}
	res, err := writeDisk(ctx, store, point, disk, vm, i, o)
	if err != nil {
		return nil, err
	}
	o.log().Info("restored a disk to a VM", "vm", vm.Name(), "point", point.Short(), "disk", disk, "as", i)
	return &Result{VM: vm.Name(), MoRef: vm.Ref(), Point: point.String(), Disks: []DiskResult{res}}, nil
}

// DiskToDatastore restores one disk of a point as a disk file on a
// datastore ("[datastore] folder/name.vmdk"), attached to no VM, uploaded
// whole over the datastore HTTP interface.
func DiskToDatastore(ctx context.Context, store *chunkstore.Store, point blob.ID, disk int, h Hypervisor, path string, o Options) (*DiskResult, error) {
	start := time.Now()
	r, err := store.OpenDisk(ctx, point, disk)
	if err != nil {
		return nil, err
	}
	f, err := h.CreateDisk(ctx, path, r.Size())
	if err != nil {
		return nil, err
	}
	var sent atomic.Int64
	progress := o.progress(disk)
	err = f.Upload(ctx, stream(r), r.Size(), func(n int64) {
		if done := sent.Add(n); progress != nil {
			progress(done, r.Size())
		}
	})
	if err != nil {
		return nil, err
	}
	o.log().Info("restored a disk to a datastore", "point", point.Short(), "disk", disk, "path", f.Path())
	return &DiskResult{Index: disk, Method: "all", Differing: sent.Load(), BytesWritten: sent.Load(), Seconds: time.Since(start).Seconds()}, nil
}

// Rehearsal is the report of a restore rehearsal.
type Rehearsal struct {
	Result
	Booted  bool    `json:"booted"`
	Seconds float64 `json:"seconds"`
	Kept    bool    `json:"kept"`
	Error   string  `json:"error,omitempty"`
}

// Rehearse restores a point as a new VM with its NICs disconnected, powers
// it on, waits for its Tools heartbeat (at most wait), and deletes it unless
// keep. The rehearsal fails when the guest does not come up.
func Rehearse(ctx context.Context, store *chunkstore.Store, point blob.ID, h Hypervisor, spec NewVM, wait time.Duration, keep bool, o Options) (*Rehearsal, error) {
	start := time.Now()
	spec.DisconnectNICs, spec.PowerOn = true, true
	res, err := ToNewVM(ctx, store, point, h, spec, o)
	if err != nil {
		return nil, err
	}
	reh := &Rehearsal{Result: *res, Kept: keep}
	vm, err := h.FindVM(ctx, res.MoRef)
	if err != nil {
		return reh, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	err = vm.WaitGuest(wctx)
	cancel()
	reh.Booted = err == nil
	if err != nil {
		reh.Error = err.Error()
	}
	if !keep {
		if derr := destroy(vm); derr != nil {
			err = errors.Join(err, derr)
		}
	}
	reh.Seconds = time.Since(start).Seconds()
	return reh, err
}
