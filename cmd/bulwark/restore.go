package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/restore"
)

func (a *app) restoreCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "restore", Short: "Restore VMs and disks from points into vSphere"}
	cmd.AddCommand(a.restoreVMCommand(), a.restoreDiskCommand(), a.rehearseCommand())
	return cmd
}

// restoreFlags are what every restore into vSphere shares: the store, the
// vCenter, and how disks are written.
type restoreFlags struct {
	vc                   vcenterFlags
	transport, appliance string
}

func (a *app) addRestoreFlags(cmd *cobra.Command, f *restoreFlags) {
	a.storeFlags(cmd)
	f.vc.add(cmd)
	cmd.Flags().StringVar(&f.transport, "transport", restore.TransportHTTP, "how new disks are written: http (datastore upload) or hotadd (only their data, through the appliance VM)")
	cmd.Flags().StringVar(&f.appliance, "appliance-vm", "", "the VM this command runs in, for hot-add")
}

// session is an open store and vCenter, and the restore target over them.
type session struct {
	store  *chunkstore.Store
	client *vsphere.Client
	target *vsphere.RestoreTarget
	opts   restore.Options
	bars   *diskBars
}

func (s *session) close(ctx context.Context) {
	s.bars.finish()
	_ = s.client.Close(context.WithoutCancel(ctx))
	s.store.Close()
}

func (a *app) openSession(ctx context.Context, f *restoreFlags, purpose string) (*session, error) {
	cfg, err := f.vc.config()
	if err != nil {
		return nil, err
	}
	if f.transport != restore.TransportHTTP && f.transport != restore.TransportHotAdd {
		return nil, fmt.Errorf("--transport %q: http or hotadd", f.transport)
	}
	s, err := a.openStore(ctx, purpose, forReading)
	if err != nil {
		return nil, err
	}
	c, err := vsphere.Connect(ctx, cfg, a.log)
	if err != nil {
		s.Close()
		return nil, err
	}
	var hotAdd *vsphere.HotAddTransport
	if f.appliance != "" {
		av, err := c.FindVM(ctx, f.appliance)
		if err != nil {
			s.Close()
			_ = c.Close(ctx)
			return nil, fmt.Errorf("--appliance-vm: %w", err)
		}
		hotAdd = c.HotAdd(types.ManagedObjectReference{Type: "VirtualMachine", Value: av.MoRef}, openAttachedDevice)
	}
	bars := a.diskBars("")
	return &session{store: s, client: c, target: c.RestoreTarget(hotAdd), bars: bars,
		opts: restore.Options{Transport: f.transport, Progress: bars.update, Log: a.log}}, nil
}

// diskBars shows one progress bar per disk being read or written. Its
// update may be called from many goroutines.
type diskBars struct {
	a      *app
	prefix string
	mu     sync.Mutex
	bars   map[int]*progress
}

func (a *app) diskBars(prefix string) *diskBars {
	return &diskBars{a: a, prefix: prefix, bars: map[int]*progress{}}
}

func (d *diskBars) update(disk int, done, total int64) {
	d.mu.Lock()
	b := d.bars[disk]
	if b == nil {
		b = newProgress(d.a.stderr, fmt.Sprintf("%sdisk %d", d.prefix, disk))
		d.bars[disk] = b
	}
	d.mu.Unlock()
	b.update(done, total)
}

func (d *diskBars) finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range d.bars {
		b.finish()
	}
}

func (a *app) restoreVMCommand() *cobra.Command {
	var f restoreFlags
	var spec restore.NewVM
	var networks []string
	var over bool
	var vmRef string
	cmd := &cobra.Command{
		Use:   "vm POINT",
		Short: "Restore a point as a new VM, or over the VM it was taken of",
		Long: `Restore a point as a new VM (--name), created from the configuration the
point recorded: guest OS, CPUs, memory, firmware, disk controllers, new thin
disks and NICs on the mapped networks with new MAC addresses. Placement
defaults to where the original VM is, when it still exists.

With --over-original, write the point back over the VM it was taken of (or
--vm), which must be powered off: only the blocks that differ are written,
those CBT reports changed since the point, or, when CBT cannot say, those a
comparison by hash finds. Change tracking is then reset, so the next backup
of the VM reads its disks whole. This needs the hot-add transport.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			mapping, err := parseNetworks(networks)
			if err != nil {
				return err
			}
			spec.Networks = mapping
			if !over && spec.Name == "" {
				return errors.New("--name: the new VM needs a name (or restore --over-original)")
			}
			s, err := a.openSession(ctx, &f, "VM restore")
			if err != nil {
				return err
			}
			defer s.close(ctx)
			pid, err := s.store.ResolvePoint(ctx, args[0], "")
			if err != nil {
				return err
			}
			var res *restore.Result
			if over {
				res, err = restore.OverOriginal(ctx, s.store, pid, s.target, vmRef, s.opts)
			} else {
				res, err = restore.ToNewVM(ctx, s.store, pid, s.target, spec, s.opts)
			}
			s.bars.finish()
			if err != nil {
				return err
			}
			return a.printRestore(res)
		},
	}
	a.addRestoreFlags(cmd, &f)
	fl := cmd.Flags()
	fl.StringVar(&spec.Name, "name", "", "name of the new VM")
	placementFlags(cmd, &spec)
	fl.StringArrayVar(&networks, "network", nil, "map a network of the point to one of the target: FROM=TO (repeatable)")
	fl.BoolVar(&spec.PowerOn, "power-on", false, "power the new VM on")
	fl.BoolVar(&spec.DisconnectNICs, "disconnect-nics", false, "start the NICs disconnected (beside a running original)")
	fl.BoolVar(&over, "over-original", false, "restore over the original VM, writing only what differs")
	fl.StringVar(&vmRef, "vm", "", "with --over-original: the VM to restore over (default: the point's)")
	return cmd
}

// placementFlags add the flags that say where a new VM goes.
func placementFlags(cmd *cobra.Command, spec *restore.NewVM) {
	fl := cmd.Flags()
	fl.StringVar(&spec.Folder, "folder", "", "inventory path of the VM folder (default: the original's)")
	fl.StringVar(&spec.Host, "host", "", "host or cluster (default: the original's)")
	fl.StringVar(&spec.Pool, "pool", "", "resource pool (default: the host's or cluster's)")
	fl.StringVar(&spec.Datastore, "datastore", "", "datastore of the new disks (default: the original first disk's)")
}

func parseNetworks(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range list {
		from, to, ok := strings.Cut(m, "=")
		if !ok || from == "" || to == "" {
			return nil, fmt.Errorf("--network %q: want FROM=TO", m)
		}
		out[from] = to
	}
	return out, nil
}

func (a *app) restoreDiskCommand() *cobra.Command {
	var f restoreFlags
	var disk int
	var vm, datastore, file string
	cmd := &cobra.Command{
		Use:   "disk POINT",
		Short: "Restore one disk of a point to an existing VM or as a disk file on a datastore",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if (vm == "") == (file == "") {
				return errors.New("name either --vm or --datastore-path")
			}
			s, err := a.openSession(ctx, &f, "disk restore")
			if err != nil {
				return err
			}
			defer s.close(ctx)
			pid, err := s.store.ResolvePoint(ctx, args[0], "")
			if err != nil {
				return err
			}
			if file != "" {
				res, err := restore.DiskToDatastore(ctx, s.store, pid, disk, s.target, file, s.opts)
				s.bars.finish()
				if err != nil {
					return err
				}
				if a.jsonOut {
					return printJSON(a.stdout, res)
				}
				fmt.Fprintf(a.stdout, "restored point %s disk %d to %s (%s in %.1fs)\n", pid.Short(), disk, file, formatBytes(res.BytesWritten), res.Seconds)
				return nil
			}
			res, err := restore.DiskToVM(ctx, s.store, pid, disk, s.target, vm, datastore, s.opts)
			s.bars.finish()
			if err != nil {
				return err
			}
			return a.printRestore(res)
		},
	}
	a.addRestoreFlags(cmd, &f)
	cmd.Flags().IntVar(&disk, "disk", 0, "index of the point's disk to restore")
	cmd.Flags().StringVar(&vm, "vm", "", "the VM to attach the restored disk to")
	cmd.Flags().StringVar(&datastore, "datastore", "", "with --vm: datastore of the new disk (default: the VM's)")
	cmd.Flags().StringVar(&file, "datastore-path", "", `restore to a disk file of no VM: "[datastore] folder/name.vmdk"`)
	a.jsonFlag(cmd, "print the result as JSON")
	return cmd
}

func (a *app) rehearseCommand() *cobra.Command {
	var f restoreFlags
	var spec restore.NewVM
	var point string
	var keep bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "rehearse VM",
		Short: "Prove a VM's latest point restores and boots, then remove it",
		Long: `Restore the latest point of VM (a name, moref or instance UUID, as the
point recorded it) as a new VM with its NICs disconnected, power it on, wait
for its VMware Tools heartbeat, report, and delete it unless --keep.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := a.openSession(ctx, &f, "restore rehearsal")
			if err != nil {
				return err
			}
			defer s.close(ctx)
			var pid blob.ID
			if point != "" {
				pid, err = s.store.ResolvePoint(ctx, point, "")
			} else {
				pid, err = latestPointOf(ctx, s.store, args[0])
			}
			if err != nil {
				return err
			}
			if spec.Name == "" {
				spec.Name = fmt.Sprintf("%s-rehearsal-%s", args[0], time.Now().UTC().Format("20060102-150405"))
			}
			reh, err := restore.Rehearse(ctx, s.store, pid, s.target, spec, wait, keep, s.opts)
			s.bars.finish()
			if reh != nil {
				if a.jsonOut {
					if perr := printJSON(a.stdout, reh); perr != nil {
						return perr
					}
				} else {
					verdict := "FAILED"
					if reh.Booted {
						verdict = "passed"
					}
					fmt.Fprintf(a.stdout, "rehearsal of point %s as %s %s in %.1fs", pid.Short(), reh.VM, verdict, reh.Seconds)
					if reh.Kept {
						fmt.Fprintf(a.stdout, " (kept: %s)", reh.MoRef)
					}
					fmt.Fprintln(a.stdout)
				}
			}
			return err
		},
	}
	a.addRestoreFlags(cmd, &f)
	a.jsonFlag(cmd, "print the report as JSON")
	fl := cmd.Flags()
	fl.StringVar(&point, "point", "", "rehearse this point rather than the VM's latest")
	fl.StringVar(&spec.Name, "name", "", "name of the rehearsal VM (default: VM-rehearsal-TIME)")
	placementFlags(cmd, &spec)
	fl.BoolVar(&keep, "keep", false, "keep the VM afterwards")
	fl.DurationVar(&wait, "timeout", 10*time.Minute, "how long to wait for the guest's heartbeat")
	return cmd
}

// latestPointOf finds the newest point of a VM named by name, moref or
// instance UUID.
func latestPointOf(ctx context.Context, s *chunkstore.Store, vm string) (blob.ID, error) {
	points, err := s.Points(ctx)
	if err != nil {
		return blob.ID{}, err
	}
	var latest *chunkstore.Point
	for _, p := range points {
		src := p.Source
		if src.VMName != vm && src.MoRef != vm && src.VMUUID != vm {
			continue
		}
		if latest == nil || p.Time.After(latest.Time) {
			latest = p
		}
	}
	if latest == nil {
		return blob.ID{}, fmt.Errorf("no point of a VM %q in the store", vm)
	}
	return latest.ID, nil
}

func (a *app) printRestore(res *restore.Result) error {
	if a.jsonOut {
		return printJSON(a.stdout, res)
	}
	fmt.Fprintf(a.stdout, "restored point %s to %s (%s)\n", res.Point[:12], res.VM, res.MoRef)
	for _, d := range res.Disks {
		how := d.Method
		if d.Reason != "" {
			how += " (" + d.Reason + ")"
		}
		fmt.Fprintf(a.stdout, "  disk %d: %s written, %s differing, by %s, in %.1fs\n", d.Index,
			formatBytes(d.BytesWritten), formatBytes(d.Differing), how, d.Seconds)
	}
	return nil
}
