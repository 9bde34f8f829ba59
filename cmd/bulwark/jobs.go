package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sys/unix"

	"github.com/bulwarkbackup/bulwark/appliance"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// errRunInterrupted is recorded as the cause of a run that a signal
// stopped.
var errRunInterrupted = errors.New("interrupted (bulwark job cancel, Ctrl-C or SIGTERM)")

// stateFlag adds --state, which every vcenter and job command takes.
func stateFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "state", "", "directory of the jobs state database (required)")
	_ = cmd.MarkFlagRequired("state")
}

// withState opens the state database in dir for the length of fn.
func (a *app) withState(dir string, fn func(*jobs.State) error) (err error) {
	st, err := a.openState(dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	return fn(st)
}

func (a *app) openState(dir string) (*jobs.State, error) {
	st, err := jobs.OpenState(dir, a.log)
	if errors.Is(err, jobs.ErrStateLocked) {
		if names := runningJobs(dir); len(names) > 0 {
			return nil, fmt.Errorf("%w: \"bulwark job run\" of %s holds it until the run ends (\"bulwark job cancel\" stops it)",
				err, strings.Join(names, ", "))
		}
	}
	return st, err
}

// passwordSource says where a vCenter's password is kept.
func passwordSource(v jobs.VCenter) string {
	if v.PasswordEnv != "" {
		return "$" + v.PasswordEnv
	}
	return "sealed in the store"
}

func (a *app) vcenterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vcenter",
		Short: "Manage the vCenters that jobs back up from",
		Long: `A vCenter is stored in the jobs state database under a name that jobs refer
to: its URL, user, certificate thumbprint and the name of the environment
variable that holds its password. The password itself is never stored.`,
	}
	cmd.AddCommand(a.vcenterAddCommand(), a.vcenterListCommand(), a.vcenterRemoveCommand())
	return cmd
}

func (a *app) vcenterAddCommand() *cobra.Command {
	var dir string
	var vc vcenterFlags
	var replace bool
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a vCenter, after checking that it answers and accepts the login",
		Long: `Add a vCenter under NAME. Bulwark connects and logs in before it stores
anything. Give the fingerprint of the vCenter's certificate with --thumbprint
(or accept any certificate, explicitly, with --insecure). Without either, add
shows the fingerprints of the certificate the server presents, to be checked
against what vCenter shows and passed back with --thumbprint: trust on first
use is never implicit.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rec := jobs.VCenter{Name: args[0], URL: vc.url, Username: vc.username, PasswordEnv: vc.passwordEnv,
				Thumbprint: vc.thumbprint, Insecure: vc.insecure}
			unpinned := rec.Thumbprint == "" && !rec.Insecure
			// Everything but the missing pin is checked before the server
			// is contacted.
			probe := rec
			probe.Insecure = probe.Insecure || unpinned
			if err := probe.Validate(); err != nil {
				return err
			}
			cfg, err := appliance.VCenterConfig(rec, nil)
			if err != nil {
				return err
			}
			if unpinned {
				sha1, sha256, err := vsphere.FetchThumbprint(ctx, rec.URL)
				if err != nil {
					return fmt.Errorf("vCenter %s: no --thumbprint given, and its certificate could not be fetched: %w", rec.Name, err)
				}
				return fmt.Errorf(`vCenter %s: the certificate is not pinned. The server presents
  SHA-256 %s
  SHA-1   %s
If this is what vCenter shows as its certificate's fingerprint, run again with
  --thumbprint %s
(or with --insecure to accept any certificate)`, rec.Name, sha256, sha1, sha256)
			}
			return a.withState(dir, func(st *jobs.State) error {
				if _, err := st.VCenter(rec.Name); err == nil && !replace {
					return fmt.Errorf("vCenter %s exists: give --replace to change it", rec.Name)
				} else if err != nil && !errors.Is(err, jobs.ErrNotFound) {
					return err
				}
				c, err := vsphere.Connect(ctx, cfg, a.log)
				if err != nil {
					return fmt.Errorf("vCenter %s: %w", rec.Name, err)
				}
				instance := c.InstanceUUID()
				if err := c.Close(context.WithoutCancel(ctx)); err != nil {
					a.log.Warn("log out of vCenter", "vcenter", rec.Name, "err", err)
				}
				if err := st.PutVCenter(rec); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "vCenter %s added: %s, instance %s\n", rec.Name, c.URL(), instance)
				return nil
			})
		},
	}
	stateFlag(cmd, &dir)
	f := cmd.Flags()
	f.StringVar(&vc.url, "url", "", "vCenter URL or host name (required)")
	f.StringVar(&vc.username, "username", "", "vCenter user (required)")
	f.StringVar(&vc.passwordEnv, "password-env", "", "environment variable holding the vCenter password, here and whenever a job runs (required)")
	f.StringVar(&vc.thumbprint, "thumbprint", "", "SHA-1 or SHA-256 fingerprint of the vCenter's certificate")
	f.BoolVar(&vc.insecure, "insecure", false, "accept any certificate (say it explicitly: this trusts whoever answers)")
	f.BoolVar(&replace, "replace", false, "replace the vCenter of the same name")
	_ = cmd.MarkFlagRequired("url")
	_ = cmd.MarkFlagRequired("username")
	_ = cmd.MarkFlagRequired("password-env")
	cmd.MarkFlagsMutuallyExclusive("thumbprint", "insecure")
	return cmd
}

func (a *app) vcenterListCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the vCenters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withState(dir, func(st *jobs.State) error {
				vcs, err := st.VCenters()
				if err != nil {
					return err
				}
				if a.jsonOut {
					if vcs == nil {
						vcs = []jobs.VCenter{}
					}
					return printJSON(a.stdout, vcs)
				}
				tw := newTable(a.stdout)
				fmt.Fprintln(tw, "NAME\tURL\tUSER\tPASSWORD FROM\tCERTIFICATE\tADDED")
				for _, v := range vcs {
					cert := v.Thumbprint
					if v.Insecure {
						cert = "any (insecure)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.URL, v.Username, passwordSource(v), cert,
						v.Added.Local().Format(time.DateTime))
				}
				return tw.Flush()
			})
		},
	}
	stateFlag(cmd, &dir)
	a.jsonFlag(cmd, "print a JSON array")
	return cmd
}

func (a *app) vcenterRemoveCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a vCenter that no job uses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withState(dir, func(st *jobs.State) error {
				if err := st.DeleteVCenter(args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "vCenter %s removed\n", args[0])
				return nil
			})
		},
	}
	stateFlag(cmd, &dir)
	return cmd
}

func (a *app) jobCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Create, run and inspect backup jobs",
		Long: `A job backs up the VMs it selects from one vCenter into a store, on a cron
schedule, and keeps its points by a retention policy. Jobs and their history
live in the state database given by --state.

Only one process can have the state database open. "bulwark job run" keeps it
open until its run ends, so meanwhile the other commands here that read or
change jobs fail with "in use by another process"; "bulwark job cancel" works
from the run's pid file alone and stops the run.`,
	}
	cmd.AddCommand(a.jobCreateCommand(), a.jobListCommand(), a.jobShowCommand(), a.jobDeleteCommand(),
		a.jobEnableCommand(true), a.jobEnableCommand(false), a.jobRunCommand(), a.jobCancelCommand(),
		a.jobHistoryCommand())
	return cmd
}

func (a *app) jobCreateCommand() *cobra.Command {
	var dir, within, windowStart string
	var windowDuration time.Duration
	var disabled bool
	var j jobs.Job
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a job",
		Long: `Create a job: which VMs (--vm, --folder, --cluster, less --exclude), when
(--schedule, in --time-zone, and only within the backup window if one is
given) and how long its points are kept (--keep-*, as in prune; none keeps
every point). A VM is selected if any --vm, --folder or --cluster matches it,
unless an --exclude does. The selection is resolved afresh at every run, so
VMs added to a folder are backed up too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j.Name, j.Enabled = args[0], !disabled
			if within != "" {
				span, err := retention.ParseSpan(within)
				if err != nil {
					return fmt.Errorf("--keep-within: %w", err)
				}
				j.Retention.Within = span
			}
			switch {
			case windowStart == "" && windowDuration == 0:
			case windowStart == "" || windowDuration == 0:
				return errors.New("--window-start and --window-duration go together")
			default:
				j.Window = jobs.Window{Start: windowStart, Duration: windowDuration}
			}
			if err := j.Validate(); err != nil {
				return err
			}
			return a.withState(dir, func(st *jobs.State) error {
				switch _, err := st.Job(j.Name); {
				case err == nil:
					return fmt.Errorf("job %s exists: delete it first to create it anew", j.Name)
				case !errors.Is(err, jobs.ErrNotFound):
					return err
				}
				vc, err := pickVCenter(st, j.VCenter)
				if err != nil {
					return err
				}
				// Named even when it is the only vCenter, so that the job
				// stays with it when others are added.
				j.VCenter = vc.Name
				if err := st.PutJob(j); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "job %s created", j.Name)
				if next, err := j.Next(time.Now()); err == nil && !next.IsZero() && j.Enabled {
					fmt.Fprintf(a.stdout, "; its first run is due at %s", next.Format(timeWithZone))
				} else if !j.Enabled {
					fmt.Fprint(a.stdout, ", disabled")
				}
				fmt.Fprintln(a.stdout)
				return nil
			})
		},
	}
	stateFlag(cmd, &dir)
	f := cmd.Flags()
	f.StringVar(&j.VCenter, "vcenter", "", "name of the vCenter to back up from (default: the only one)")
	f.StringArrayVar(&j.Selection.VMs, "vm", nil, "select a VM by name, moref or instance UUID (repeatable)")
	f.StringArrayVar(&j.Selection.Folders, "folder", nil, "select the VMs below an inventory folder such as /DC0/vm/prod (repeatable)")
	f.StringArrayVar(&j.Selection.Clusters, "cluster", nil, "select the VMs of a cluster, by name or moref (repeatable)")
	f.StringArrayVar(&j.Selection.Exclude, "exclude", nil, "never select this VM, by name, moref or instance UUID (repeatable)")
	f.StringVar(&j.Schedule, "schedule", "", `when to run: five cron fields such as "30 2 * * *", or @daily, @every 6h... (required)`)
	f.StringVar(&j.TimeZone, "time-zone", "", "IANA time zone of the schedule, window and retention calendar (default UTC)")
	f.StringVar(&windowStart, "window-start", "", "backups start only in a window that opens daily at `HH:MM`")
	f.DurationVar(&windowDuration, "window-duration", 0, "how long the backup window stays open, up to 24h")
	f.IntVar(&j.Retention.Last, "keep-last", 0, "keep the newest N points of each VM (-1: all)")
	f.IntVar(&j.Retention.Hourly, "keep-hourly", 0, "keep the newest point of each of the last N hours that have one (-1: all)")
	f.IntVar(&j.Retention.Daily, "keep-daily", 0, "keep the newest point of each of the last N days that have one (-1: all)")
	f.IntVar(&j.Retention.Weekly, "keep-weekly", 0, "keep the newest point of each of the last N ISO weeks that have one (-1: all)")
	f.IntVar(&j.Retention.Monthly, "keep-monthly", 0, "keep the newest point of each of the last N months that have one (-1: all)")
	f.IntVar(&j.Retention.Quarterly, "keep-quarterly", 0, "keep the newest point of each of the last N quarters that have one (-1: all)")
	f.IntVar(&j.Retention.Yearly, "keep-yearly", 0, "keep the newest point of each of the last N years that have one (-1: all)")
	f.StringVar(&within, "keep-within", "", "keep the points taken within SPAN (such as 30d, 1y6m, 36h) of a VM's newest point")
	f.BoolVar(&disabled, "disabled", false, "create the job disabled: it runs only when asked to")
	_ = cmd.MarkFlagRequired("schedule")
	return cmd
}

// pickVCenter returns the vCenter called name, or the only one if name is
// empty.
func pickVCenter(st *jobs.State, name string) (jobs.VCenter, error) {
	vcs, err := st.VCenters()
	if err != nil {
		return jobs.VCenter{}, err
	}
	names := make([]string, len(vcs))
	for i, v := range vcs {
		if v.Name == name {
			return v, nil
		}
		names[i] = v.Name
	}
	switch {
	case len(vcs) == 0:
		return jobs.VCenter{}, errors.New(`no vCenter to back up from: add one with "bulwark vcenter add"`)
	case name != "":
		return jobs.VCenter{}, fmt.Errorf("--vcenter: unknown vCenter %q (known: %s)", name, strings.Join(names, ", "))
	case len(vcs) > 1:
		return jobs.VCenter{}, fmt.Errorf("--vcenter: there are %d vCenters (%s): choose one", len(vcs), strings.Join(names, ", "))
	}
	return vcs[0], nil
}

// timeWithZone shows times in the zone of the job they belong to.
const timeWithZone = "2006-01-02 15:04 MST"

// jobView is a job as list and show print it.
type jobView struct {
	Job     jobs.Job    `json:"job"`
	Next    []time.Time `json:"next"`
	LastRun *jobs.Run   `json:"last_run,omitempty"`
}

func viewJob(st *jobs.State, j jobs.Job, next int) (jobView, error) {
	v := jobView{Job: j, Next: []time.Time{}}
	t := time.Now()
	for range next {
		n, err := j.Next(t)
		if err != nil {
			return v, err
		}
		if n.IsZero() {
			break
		}
		v.Next = append(v.Next, n)
		t = n
	}
	runs, err := st.Runs(j.Name, 1)
	if err != nil {
		return v, err
	}
	if len(runs) > 0 {
		v.LastRun = &runs[0]
	}
	return v, nil
}

func (a *app) jobListCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the jobs with their next and last runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withState(dir, func(st *jobs.State) error {
				all, err := st.Jobs()
				if err != nil {
					return err
				}
				views := make([]jobView, 0, len(all))
				for _, j := range all {
					v, err := viewJob(st, j, 1)
					if err != nil {
						return err
					}
					views = append(views, v)
				}
				if a.jsonOut {
					return printJSON(a.stdout, views)
				}
				tw := newTable(a.stdout)
				fmt.Fprintln(tw, "NAME\tVCENTER\tSCHEDULE\tNEXT RUN\tLAST RUN")
				for _, v := range views {
					next := "disabled"
					if v.Job.Enabled && len(v.Next) > 0 {
						next = v.Next[0].Format(timeWithZone)
					}
					last := "never"
					if r := v.LastRun; r != nil {
						last = fmt.Sprintf("%s %s", r.Result, r.Started.Local().Format(time.DateTime))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Job.Name, cmp.Or(v.Job.VCenter, "(the only one)"), v.Job.Schedule, next, last)
				}
				return tw.Flush()
			})
		},
	}
	stateFlag(cmd, &dir)
	a.jsonFlag(cmd, "print a JSON array")
	return cmd
}

func (a *app) jobShowCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a job, its next three runs and its last run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withState(dir, func(st *jobs.State) error {
				j, err := st.Job(args[0])
				if err != nil {
					return err
				}
				v, err := viewJob(st, j, 3)
				if err != nil {
					return err
				}
				if a.jsonOut {
					return printJSON(a.stdout, v)
				}
				return a.printJob(v)
			})
		},
	}
	stateFlag(cmd, &dir)
	a.jsonFlag(cmd, "print a JSON object")
	return cmd
}

func (a *app) printJob(v jobView) error {
	j := v.Job
	tw := newTable(a.stdout)
	state := "enabled"
	if !j.Enabled {
		state = "disabled: runs only when asked to"
	}
	fmt.Fprintf(tw, "job\t%s (%s)\n", j.Name, state)
	fmt.Fprintf(tw, "vCenter\t%s\n", cmp.Or(j.VCenter, "(the only one)"))
	sel := j.Selection
	for _, l := range []struct {
		what  string
		items []string
	}{{"VMs", sel.VMs}, {"folders", sel.Folders}, {"clusters", sel.Clusters}, {"excluded", sel.Exclude}} {
		if len(l.items) > 0 {
			fmt.Fprintf(tw, "%s\t%s\n", l.what, strings.Join(l.items, ", "))
		}
	}
	fmt.Fprintf(tw, "schedule\t%s (%s)\n", j.Schedule, cmp.Or(j.TimeZone, "UTC"))
	fmt.Fprintf(tw, "backup window\t%s\n", j.Window)
	keep := "every point"
	if !j.Retention.Empty() {
		keep = j.Retention.String()
	}
	fmt.Fprintf(tw, "retention\t%s\n", keep)
	for i, n := range v.Next {
		label := ""
		if i == 0 {
			label = "next runs"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, n.Format(timeWithZone))
	}
	if r := v.LastRun; r != nil {
		fmt.Fprintf(tw, "last run\t%s\n", runLine(*r))
	} else {
		fmt.Fprintf(tw, "last run\tnever\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r := v.LastRun; r != nil && len(r.VMs) > 0 {
		return a.printVMs("  ", r.VMs)
	}
	return nil
}

// runLine describes a run in one line.
func runLine(r jobs.Run) string {
	s := fmt.Sprintf("%s, run %s (%s) started %s", r.Result, r.ID, r.Trigger, r.Started.Local().Format(time.DateTime))
	if !r.Ended.IsZero() {
		s += fmt.Sprintf(", took %v", r.Ended.Sub(r.Started).Round(100*time.Millisecond))
	}
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}

// printVMs prints the VMs of a run as a table.
func (a *app) printVMs(indent string, vms []jobs.VMRun) error {
	tw := newTable(a.stdout)
	fmt.Fprintf(tw, "%sVM\tRESULT\tCONSISTENCY\tREAD\tNEW\tSTORED\tTIME\tERROR\n", indent)
	for _, v := range vms {
		res := cmp.Or(v.Result, "pending")
		var read, nw, stored, took string
		if v.Done() {
			read, nw, stored = formatBytes(v.BytesRead), formatBytes(v.BytesNew), formatBytes(v.BytesStored)
		}
		if v.Duration > 0 {
			took = v.Duration.Round(10 * time.Millisecond).String()
		}
		why := strings.Join(slices.DeleteFunc(append([]string{v.Error}, v.Warnings...), func(s string) bool { return s == "" }), "; ")
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, v.Name, res, v.Consistency, read, nw, stored, took, why)
	}
	return tw.Flush()
}

func (a *app) jobDeleteCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a job; its history and points are kept",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withState(dir, func(st *jobs.State) error {
				if err := st.DeleteJob(args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "job %s deleted; its history and its points are kept\n", args[0])
				return nil
			})
		},
	}
	stateFlag(cmd, &dir)
	return cmd
}

func (a *app) jobEnableCommand(enable bool) *cobra.Command {
	var dir string
	use, short, done := "enable", "Let the schedule start a job's runs", "enabled"
	if !enable {
		use, short, done = "disable", "Keep the schedule from starting a job's runs", "disabled"
	}
	cmd := &cobra.Command{
		Use:   use + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withState(dir, func(st *jobs.State) error {
				j, err := st.Job(args[0])
				if err != nil {
					return err
				}
				if j.Enabled == enable {
					fmt.Fprintf(a.stdout, "job %s was already %s\n", j.Name, done)
					return nil
				}
				j.Enabled = enable
				if err := st.PutJob(j); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "job %s %s\n", j.Name, done)
				return nil
			})
		},
	}
	stateFlag(cmd, &dir)
	return cmd
}

func (a *app) jobRunCommand() *cobra.Command {
	var dir, transport, applianceVM string
	var concurrency, perDatastore int
	cmd := &cobra.Command{
		Use:   "run NAME",
		Short: "Run a job now, in the foreground",
		Long: `Run a job now, enabled or not, and wait for it: the snapshots that earlier,
killed backups into this store left on VMs are removed first, then the VMs the
job selects are backed up within the limits given, and the job's retention
policy is applied. Each VM's progress is reported on stderr, and a summary
on stdout. The exit status is non-zero unless every VM was backed up.

While it runs it keeps the state database open, so other job commands wait
for it to end, and it leaves its process ID in <state>/running/NAME.pid for
"bulwark job cancel". Cancelled (by job cancel, Ctrl-C or SIGTERM), it stops
the backups under way, removes their snapshots, makes no point for the VMs
it had not finished, and records the run as cancelled.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			name := args[0]
			if err := jobs.CheckName("job", name); err != nil {
				return err
			}
			st, err := a.openState(dir)
			if err != nil {
				return err
			}
			pid, err := createPIDFile(dir, name)
			if err != nil {
				return errors.Join(err, st.Close())
			}
			// The pid file goes last, once the run is recorded and the
			// state is closed, so that whoever waits for it to go can
			// read the history at once.
			defer func() {
				err = errors.Join(err, st.Close(), pid.release())
			}()
			j, err := st.Job(name)
			if err != nil {
				return err
			}
			vcRec, err := st.JobVCenter(j)
			if err != nil {
				return err
			}
			s, err := a.openStore(ctx, "job "+name, forWriting)
			if err != nil {
				return err
			}
			defer s.Close()
			cfg, err := appliance.VCenterConfig(vcRec, s)
			if err != nil {
				return err
			}
			c, err := vsphere.Connect(ctx, cfg, a.log)
			if err != nil {
				return fmt.Errorf("vCenter %s: %w", vcRec.Name, err)
			}
			defer func() { _ = c.Close(context.WithoutCancel(ctx)) }()

			b := &appliance.Backups{VCenter: c, Store: s, Log: a.log}
			switch transport {
			case "http":
			case "hotadd":
				av, err := c.FindVM(ctx, applianceVM)
				if err != nil {
					return fmt.Errorf("--appliance-vm: %w", err)
				}
				b.Transport = c.HotAdd(types.ManagedObjectReference{Type: "VirtualMachine", Value: av.MoRef}, openAttachedDevice)
			default:
				return fmt.Errorf("--transport %q: http or hotadd", transport)
			}
			removed, err := b.RemoveOrphanSnapshots(ctx)
			for _, o := range removed {
				fmt.Fprintf(a.stderr, "removed snapshot %q that an earlier backup left on %s\n", o.Name, o.VMName)
			}
			if err != nil {
				return fmt.Errorf("remove leftover snapshots: %w", err)
			}

			ev := &eventPrinter{w: a.stderr}
			r, err := jobs.NewRunner(jobs.RunnerConfig{Inventory: b, Backuper: b, Retainer: b, State: st,
				Concurrency: concurrency, SnapshotsPerDatastore: perDatastore, Progress: ev.print, Log: a.log})
			if err != nil {
				return err
			}
			// The run gets its own context, cancelled with a cause that
			// says why, for the history to show rather than "context
			// canceled".
			runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
			defer cancel(nil)
			stop := context.AfterFunc(ctx, func() { cancel(errRunInterrupted) })
			defer stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			run, err := r.RunJob(runCtx, j, jobs.TriggerManual, time.Time{})
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := printJSON(a.stdout, run); err != nil {
					return err
				}
			} else {
				if err := a.printVMs("", run.VMs); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "job %s: %s\n", j.Name, runLine(run))
			}
			switch run.Result {
			case jobs.ResultSuccess, jobs.ResultWarning:
				return nil
			case jobs.ResultCancelled:
				return fmt.Errorf("run %s of job %s was cancelled: the VMs it had not finished have no new point", run.ID, j.Name)
			}
			return fmt.Errorf("run %s of job %s %s: %s", run.ID, j.Name, run.Result, run.Error)
		},
	}
	stateFlag(cmd, &dir)
	a.storeFlags(cmd)
	f := cmd.Flags()
	f.IntVar(&concurrency, "concurrency", jobs.DefaultConcurrency, "most VM backups at once")
	f.IntVar(&perDatastore, "snapshots-per-datastore", jobs.DefaultSnapshotsPerDatastore, "most VM backups at once on each datastore (a snapshot locks VMFS metadata)")
	f.StringVar(&transport, "transport", "http", "how to read the disks: http (datastore HTTP from the VM's host) or hotadd")
	f.StringVar(&applianceVM, "appliance-vm", "", "with --transport hotadd: the VM this appliance runs in")
	a.jsonFlag(cmd, "print the run as a JSON object")
	return cmd
}

// eventPrinter reports a run's progress one line per VM event. The runner
// calls it from many goroutines.
type eventPrinter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *eventPrinter) print(e jobs.Event) {
	var line string
	switch e.Kind {
	case jobs.EventRunStarted:
		line = fmt.Sprintf("run %s of job %s started", e.RunID, e.Job)
	case jobs.EventStarted:
		line = fmt.Sprintf("%s: backup started", e.VM.Name)
	case jobs.EventFinished:
		v := e.Result
		switch {
		case v.Done():
			line = fmt.Sprintf("%s: %s, %s, read %s, new %s, stored %s in %v", v.Name, v.Result, v.Consistency,
				formatBytes(v.BytesRead), formatBytes(v.BytesNew), formatBytes(v.BytesStored), v.Duration.Round(10*time.Millisecond))
			for _, w := range v.Warnings {
				line += "\n" + v.Name + ": warning: " + w
			}
		default:
			line = fmt.Sprintf("%s: %s: %s", v.Name, v.Result, v.Error)
		}
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, line)
}

func (a *app) jobCancelCommand() *cobra.Command {
	var dir string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "cancel NAME",
		Short: `Stop the run of a job that "bulwark job run" is making`,
		Long: `Cancel sends SIGINT to the "bulwark job run" process of the job, found by
its pid file in <state>/running, and waits until the run has removed its
snapshots and recorded itself as cancelled. It does not open the state
database, which the run holds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			if err := jobs.CheckName("job", name); err != nil {
				return err
			}
			path := pidPath(dir, name)
			f, err := os.Open(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("job %s has no run going (no %s)", name, path)
			}
			if err != nil {
				return err
			}
			defer f.Close()
			pid, err := readPID(f)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			alive, err := pidFileHeld(f)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if !alive {
				return fmt.Errorf("job %s has no run going: process %d, which left %s, has ended", name, pid, path)
			}
			if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
				return fmt.Errorf("signal process %d running job %s: %w", pid, name, err)
			}
			if noWait {
				fmt.Fprintf(a.stdout, "asked process %d to cancel the run of job %s\n", pid, name)
				return nil
			}
			fmt.Fprintf(a.stderr, "asked process %d to cancel the run of job %s; waiting for it to clean up...\n", pid, name)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				alive, err := pidFileHeld(f)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				if !alive {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-tick.C:
				}
			}
			fmt.Fprintf(a.stdout, "run of job %s cancelled\n", name)
			return nil
		},
	}
	stateFlag(cmd, &dir)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the run is told to stop, without waiting for it to end")
	return cmd
}

func (a *app) jobHistoryCommand() *cobra.Command {
	var dir string
	var limit int
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show a job's runs, newest first, with each VM's result",
		Long: `History shows the runs of a job, newest first, also after the job was
deleted. It reads the state database, so while a "bulwark job run" holds it
history fails with "in use by another process": wait for the run to end.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return a.withState(dir, func(st *jobs.State) error {
				runs, err := st.Runs(name, limit)
				if err != nil {
					return err
				}
				if len(runs) == 0 {
					if _, err := st.Job(name); err != nil {
						return err
					}
				}
				if a.jsonOut {
					if runs == nil {
						runs = []jobs.Run{}
					}
					return printJSON(a.stdout, runs)
				}
				if len(runs) == 0 {
					fmt.Fprintf(a.stdout, "job %s has not run yet\n", name)
				}
				for i, r := range runs {
					if i > 0 {
						fmt.Fprintln(a.stdout)
					}
					fmt.Fprintln(a.stdout, runLine(r))
					if len(r.VMs) > 0 {
						if err := a.printVMs("  ", r.VMs); err != nil {
							return err
						}
					}
				}
				return nil
			})
		},
	}
	stateFlag(cmd, &dir)
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most N runs (0: all)")
	a.jsonFlag(cmd, "print a JSON array")
	return cmd
}

func pidPath(stateDir, job string) string {
	return filepath.Join(stateDir, "running", job+".pid")
}

// runningJobs lists the jobs whose pid files are held by a live run.
func runningJobs(stateDir string) []string {
	entries, _ := os.ReadDir(filepath.Join(stateDir, "running"))
	var names []string
	for _, e := range entries {
		job, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		f, err := os.Open(filepath.Join(stateDir, "running", e.Name()))
		if err != nil {
			continue
		}
		if alive, err := pidFileHeld(f); err == nil && alive {
			names = append(names, job)
		}
		f.Close()
	}
	return names
}

// A pidFile tells "job cancel" which process runs a job. The run holds an
// exclusive flock on it for its life, so that a pid file that a killed run
// left behind is seen to be stale, and never gets a signal sent to an
// unrelated process that happens to reuse its pid.
type pidFile struct {
	path string
	f    *os.File
}

// createPIDFile writes the pid file of a run of job. The caller must have
// the state open, which makes it the only process that writes pid files
// there.
func createPIDFile(stateDir, job string) (*pidFile, error) {
	path := pidPath(stateDir, job)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	// Written and locked aside, then renamed, so that the file is locked
	// from the moment it can be found.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	fail := func(err error) (*pidFile, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fail(err)
	}
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return &pidFile{path: path, f: f}, nil
}

// release removes the pid file; closing it drops the lock.
func (p *pidFile) release() error {
	err := os.Remove(p.path)
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

// pidFileHeld reports whether a live run holds the pid file f.
func pidFileHeld(f *os.File) (bool, error) {
	err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	switch {
	case err == nil:
		return false, unix.Flock(int(f.Fd()), unix.LOCK_UN)
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	}
	return false, err
}

func readPID(f *os.File) (int, error) {
	line, err := bufio.NewReader(io.NewSectionReader(f, 0, 64)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("no process ID in it (%q)", line)
	}
	return pid, nil
}
