package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
)

func (a *app) labCommand() *cobra.Command {
	var opts lab.Options
	var diskMiB int64
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a simulated vCenter whose VMs can be backed up",
		Long: `Run the lab: govmomi's vCenter simulator with VMs whose disks are real
(sparse files with a GPT and ext4 filesystems), snapshots, Changed Block
Tracking, and a guest API to write into the disks. It prints the vCenter URL,
credentials and certificate thumbprint, and the guest API's URL, and runs
until interrupted. The guest API is described in README.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts.DiskSize = diskMiB << 20
			opts.Log = a.log
			fmt.Fprintf(a.stderr, "making %d VMs with %d disks of %d MiB...\n", opts.VMs, opts.Disks, diskMiB)
			l, err := lab.Start(ctx, opts)
			if err != nil {
				return err
			}
			defer l.Close()
			u := l.URL()
			u.User = nil
			fmt.Fprintf(a.stdout, "vCenter:    %s\nusername:   %s\npassword:   %s\nthumbprint: %s\nguest API:  %s\n",
				u, l.Username(), l.Password(), l.Thumbprint(), l.GuestURL())
			for _, vm := range l.VMs() {
				fmt.Fprintf(a.stdout, "VM %s (%s): %d disks\n", vm.Name, vm.MoRef, len(vm.Disks))
			}
			fmt.Fprintln(a.stdout, "running; interrupt to stop")
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:8989", "address of the vCenter")
	f.StringVar(&opts.GuestListen, "guest-listen", "127.0.0.1:8990", "address of the guest API")
	f.IntVar(&opts.VMs, "vms", 3, "number of VMs")
	f.IntVar(&opts.Disks, "disks", 2, "disks per VM")
	f.IntVar(&opts.Datastores, "datastores", 2, "number of datastores")
	f.Int64Var(&diskMiB, "disk-size", 256, "size of each disk in MiB")
	f.BoolVar(&opts.ApplianceVM, "appliance-vm", true, "add a VM named "+lab.ApplianceVMName+" for hot-add backups")
	return cmd
}
