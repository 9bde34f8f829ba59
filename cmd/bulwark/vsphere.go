package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
)

// vcenterFlags are the flags of commands that talk to a vCenter.
type vcenterFlags struct {
	url, username, passwordEnv, thumbprint string
	insecure                               bool
}

func (v *vcenterFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&v.url, "vcenter", "", "vCenter URL or host name (required)")
	f.StringVar(&v.username, "username", "", "vCenter user (required)")
	f.StringVar(&v.passwordEnv, "password-env", "", "environment variable holding the vCenter password (required)")
	f.StringVar(&v.thumbprint, "thumbprint", "", "SHA-1 or SHA-256 fingerprint of the vCenter's certificate")
	f.BoolVar(&v.insecure, "insecure", false, "accept any certificate (say it explicitly: this trusts whoever answers)")
	_ = cmd.MarkFlagRequired("vcenter")
	_ = cmd.MarkFlagRequired("username")
	_ = cmd.MarkFlagRequired("password-env")
}

func (v *vcenterFlags) config() (vsphere.Config, error) {
	pw, ok := os.LookupEnv(v.passwordEnv)
	if !ok || pw == "" {
		return vsphere.Config{}, fmt.Errorf("--password-env: $%s is not set", v.passwordEnv)
	}
	return vsphere.Config{URL: v.url, Username: v.username, Password: pw, Thumbprint: v.thumbprint, Insecure: v.insecure}, nil
}

func (a *app) backupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Back up vSphere VMs"}
	cmd.AddCommand(a.backupVMCommand())
	return cmd
}

func (a *app) backupVMCommand() *cobra.Command {
	var vc vcenterFlags
	var vmName, job, transport, appliance string
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Back up one VM now, reading only what changed since its last point",
		Long: `Back up one VM: turn Changed Block Tracking on if it is off, take a snapshot
(quiesced when VMware Tools run), read the areas that changed since the VM's
last point in the store (the allocated areas the first time), and remove the
snapshot, also when the backup fails or is interrupted. Snapshots that an
earlier, killed backup into this store left on the VM are removed first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := vc.config()
			if err != nil {
				return err
			}
			s, err := a.openStore(ctx, "backup of VM "+vmName, forWriting)
			if err != nil {
				return err
			}
			defer s.Close()
			c, err := vsphere.Connect(ctx, cfg, a.log)
			if err != nil {
				return err
			}
			defer func() { _ = c.Close(context.WithoutCancel(ctx)) }()
			vm, err := c.FindVM(ctx, vmName)
			if err != nil {
				return err
			}
			ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: vm.MoRef}
			removed, err := c.RemoveOrphanSnapshots(ctx, s.ID(), nil)
			for _, o := range removed {
				fmt.Fprintf(a.stderr, "removed snapshot %q that an earlier backup left on %s\n", o.Name, o.VMName)
			}
			if err != nil {
				return fmt.Errorf("remove leftover snapshots: %w", err)
			}
			opts := vsphere.BackupOptions{Job: job}
			switch transport {
			case "http":
			case "hotadd":
				av, err := c.FindVM(ctx, appliance)
				if err != nil {
					return fmt.Errorf("--appliance-vm: %w", err)
				}
				opts.Transport = c.HotAdd(types.ManagedObjectReference{Type: "VirtualMachine", Value: av.MoRef}, openAttachedDevice)
			default:
				return fmt.Errorf("--transport %q: http or hotadd", transport)
			}
			// Disks report from the goroutines that chunk them.
			bars := a.diskBars(vm.Name + " ")
			opts.Progress = bars.update
			start := time.Now()
			res, err := c.BackupVM(ctx, s, ref, opts)
			bars.finish()
			if res != nil {
				for _, w := range res.Warnings {
					fmt.Fprintf(a.stderr, "warning: %s\n", w)
				}
			}
			if err != nil {
				return err
			}
			sum := vmBackupSummary{Point: res.Point.ID.String(), VM: vm.Name, MoRef: vm.MoRef, Consistency: res.Consistency,
				FullReads: res.FullReads, Warnings: res.Warnings, BytesRead: res.BytesTransferred,
				BytesNew: res.Point.Stats.BytesNew, BytesStored: res.Point.Stats.BytesStored, Seconds: time.Since(start).Seconds()}
			if a.jsonOut {
				return printJSON(a.stdout, sum)
			}
			for _, f := range res.FullReads {
				fmt.Fprintf(a.stdout, "full read: %s\n", f)
			}
			fmt.Fprintf(a.stdout, "%s: %s, read %s, new %s, stored %s in %.1fs\n", vm.Name, res.Consistency,
				formatBytes(sum.BytesRead), formatBytes(sum.BytesNew), formatBytes(sum.BytesStored), sum.Seconds)
			fmt.Fprintln(a.stdout, sum.Point)
			return nil
		},
	}
	a.storeFlags(cmd)
	vc.add(cmd)
	cmd.Flags().StringVar(&vmName, "vm", "", "VM name, inventory path or moref (required)")
	cmd.Flags().StringVar(&job, "job", "", "job name recorded in the point")
	cmd.Flags().StringVar(&transport, "transport", "http", "how to read the disks: http (datastore HTTP from the VM's host) or hotadd")
	cmd.Flags().StringVar(&appliance, "appliance-vm", "", "with --transport hotadd: the VM this appliance runs in")
	_ = cmd.MarkFlagRequired("vm")
	a.jsonFlag(cmd, "print the result as JSON")
	return cmd
}

type vmBackupSummary struct {
	Point       string   `json:"point"`
	VM          string   `json:"vm"`
	MoRef       string   `json:"moref"`
	Consistency string   `json:"consistency"`
	FullReads   []string `json:"full_reads,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
	BytesRead   int64    `json:"bytes_read"`
	BytesNew    int64    `json:"bytes_new"`
	BytesStored int64    `json:"bytes_stored"`
	Seconds     float64  `json:"seconds"`
}

// openAttachedDevice finds a hot-added disk among the appliance's block
// devices. Linux names a VMware SCSI disk by its UUID under
// /dev/disk/by-id as wwn-0x6000c29... built from the backing's UUID.
func openAttachedDevice(_ context.Context, d *types.VirtualDisk, writable bool) (vsphere.Device, error) {
	b, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok || b.Uuid == "" {
		return nil, errors.New("the attached disk has no UUID to find its device by")
	}
	path := "/dev/disk/by-id/wwn-0x" + uuidHex(b.Uuid)
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("device of the attached disk: %w (is the appliance a VM with disk.EnableUUID?)", err)
	}
	return f, nil
}

// uuidHex turns "6000C29a-..." into lower-case hex without dashes.
func uuidHex(u string) string {
	out := make([]byte, 0, len(u))
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			out = append(out, c)
		case c >= 'A' && c <= 'F':
			out = append(out, c+'a'-'A')
		}
	}
	return string(out)
}
