package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/appliance"
	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/certs"
	"github.com/bulwarkbackup/bulwark/appliance/config"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// demoJob is the sample job the demo makes.
const demoJob = "nightly"

func (a *app) demoCommand() *cobra.Command {
	var dir, listen string
	var vms int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the appliance against a lab vCenter, with a sample job backed up twice",
		Long: `Demo starts, on this machine and with no configuration, the lab (a simulated
vCenter whose VMs have real disks with GPT and ext4 filesystems), and the
appliance with a fresh store, both on localhost. It creates a nightly job of
every VM, runs it once, writes into the VMs' disks as a guest would, and runs
it again: the second run reads only what changed. Then it prints the
appliance's URL, user and password, and keeps running until Ctrl-C.

With --dir the store, state, configuration and logs stay in DIR and a later
demo with the same --dir picks them up; without it they go to a temporary
directory that is removed at exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if dir == "" {
				tmp, err := os.MkdirTemp("", "bulwark-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			return a.demo(ctx, dir, listen, vms)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "keep the demo's store, state and logs in DIR (default: a temporary directory)")
	f.StringVar(&listen, "listen", "127.0.0.1:8443", "address of the appliance")
	f.IntVar(&vms, "vms", 4, "number of lab VMs")
	return cmd
}

func (a *app) demo(ctx context.Context, dir, listen string, vms int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "bulwark.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	fmt.Fprintf(a.stdout, "starting the lab: %d VMs with real disks (this takes a few seconds)...\n", vms)
	l, err := lab.Start(ctx, lab.Options{VMs: vms, Disks: 1, DiskSize: 256 << 20, Log: log})
	if err != nil {
		return err
	}
	defer l.Close()

	cfgPath, err := writeDemoConfig(dir, listen, l)
	if err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	adminPassword, err := demoSecret(filepath.Join(dir, "admin.pass"), os.Getenv("BULWARK_ADMIN_PASSWORD"))
	if err != nil {
		return err
	}
	ap, err := appliance.Open(ctx, appliance.Options{Config: cfg, AdminPassword: adminPassword, Notices: io.Discard,
		Version: version, Log: log})
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- ap.Serve(ctx) }()

	err = a.demoBackups(ctx, ap, cfg.AdminUser, adminPassword, l)
	if err == nil {
		fmt.Fprintf(a.stdout, `
Bulwark is running.
  URL:       %s/   (a self-signed certificate; SHA-256 %s)
  user:      %s
  password:  %s
  API:       %s%s/openapi.json
  config:    %s  (for "bulwark serve --config")
  logs:      %s

Try:
  curl -k -c /tmp/c -H 'Content-Type: application/json' -d '{"username":"%s","password":"%s"}' %s%s/sessions
  curl -k -b /tmp/c %s%s/points
  curl -k -b /tmp/c -N %s%s/events        # live progress; run the job again from another shell:
  curl -k -b /tmp/c -X POST -H "X-CSRF-Token: <csrf_token from the login>" %s%s/jobs/%s/run
  write into a VM's disk as its guest would: curl -X PUT --data-binary @FILE '%s/vms/vm01/disks/0?offset=%d'
  browse a point's files:  curl -k -b /tmp/c '%s%s/points/<id>/volumes/d0p1/files?path='
  download one:            curl -k -b /tmp/c -OJ '%s%s/points/<id>/volumes/d0p1/content?path=<file>'
  rehearse its restore:    curl -k -b /tmp/c -X POST -H "X-CSRF-Token: <csrf_token>" -d '{}' %s%s/points/<id>/rehearse

Ctrl-C stops the appliance and the lab.
`, ap.URL(), certs.Fingerprint(ap.Certificate().Certificate[0]), cfg.AdminUser, adminPassword, ap.URL(), api.Prefix, cfgPath, logFile.Name(),
			cfg.AdminUser, adminPassword, ap.URL(), api.Prefix, ap.URL(), api.Prefix, ap.URL(), api.Prefix,
			ap.URL(), api.Prefix, demoJob, l.GuestURL(), demoWriteOffset(l),
			ap.URL(), api.Prefix, ap.URL(), api.Prefix, ap.URL(), api.Prefix)
	} else if ctx.Err() == nil {
		fmt.Fprintf(a.stderr, "bulwark: demo: %v\n", err)
	}
	serveErr := <-served // until Ctrl-C
	if ctx.Err() != nil && err != nil {
		return serveErr
	}
	return errors.Join(err, serveErr)
}

// demoSecret returns the secret kept in path, or makes it (given, or
// random) and keeps it there, so that a demo run again on the same
// directory logs in again.
func demoSecret(path, given string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	s := given
	if s == "" {
		var err error
		if s, err = auth.GeneratePassword(); err != nil {
			return "", err
		}
	}
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// writeDemoConfig writes the appliance's configuration for the lab and
// returns its path.
func writeDemoConfig(dir, listen string, l *lab.Lab) (string, error) {
	var storePW [24]byte
	_, _ = rand.Read(storePW[:])
	storePass, err := demoSecret(filepath.Join(dir, "store.pass"), base64.RawURLEncoding.EncodeToString(storePW[:]))
	if err != nil || storePass == "" {
		return "", fmt.Errorf("store password: %w", err)
	}
	// The lab makes a new password at every start.
	if err := os.WriteFile(filepath.Join(dir, "vcenter.pass"), []byte(l.Password()+"\n"), 0o600); err != nil {
		return "", err
	}
	u := l.URL()
	u.User = nil
	yaml := fmt.Sprintf(`# Written by "bulwark demo".
listen: %q
store:
  path: store
  password_file: store.pass
  create: true
state: state
vcenters:
  - name: lab
    url: %q
    username: %q
    password_file: vcenter.pass
    thumbprint: %q
log:
  level: info
  format: json
`, listen, u.String(), l.Username(), l.Thumbprint())
	path := filepath.Join(dir, "bulwark.yaml")
	return path, os.WriteFile(path, []byte(yaml), 0o600)
}

// demoWriteOffset is where in a disk a guest write changes data but no
// filesystem: the first "database" region of the raw partition.
func demoWriteOffset(l *lab.Lab) int64 {
	for _, vm := range l.VMs() {
		for _, d := range vm.Disks {
			if d.Guest != nil && len(d.Guest.DataRegions) > 0 {
				return d.Guest.DataRegions[0].Offset
			}
		}
	}
	return 64 << 20
}

// demoBackups makes the sample job through the API and runs it twice, with
// guest writes in between.
func (a *app) demoBackups(ctx context.Context, ap *appliance.Appliance, user, password string, l *lab.Lab) error {
	c := api.NewClient(ap.URL(), sha256.Sum256(ap.Certificate().Certificate[0]))
	if _, err := c.Login(ctx, user, password); err != nil {
		return fmt.Errorf("log in to the appliance: %w", err)
	}
	job := jobs.Job{Name: demoJob, Schedule: "0 2 * * *", Enabled: true,
		Selection: jobs.Selection{Folders: []string{"/DC0/vm"}},
		Retention: retention.Policy{Last: 7, Daily: 7, Weekly: 4, Monthly: 6}}
	err := c.Do(ctx, http.MethodPost, api.Prefix+"/jobs", job, nil)
	var se *api.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusConflict:
		fmt.Fprintf(a.stdout, "job %s exists\n", demoJob)
	case err != nil:
		return fmt.Errorf("create job %s: %w", demoJob, err)
	default:
		fmt.Fprintf(a.stdout, "created job %s: every VM under /DC0/vm, daily at 02:00, keeping the last 7 points and 7 daily, 4 weekly, 6 monthly ones\n", demoJob)
	}
	if err := a.demoRun(ctx, c, "first backup (full: allocated blocks only)"); err != nil {
		return err
	}
	off := demoWriteOffset(l)
	buf := make([]byte, 4<<20)
	for _, vm := range l.VMs() {
		_, _ = rand.Read(buf)
		if err := l.Write(vm.Name, 0, off, buf); err != nil {
			return fmt.Errorf("guest write into %s: %w", vm.Name, err)
		}
	}
	fmt.Fprintf(a.stdout, "the guests wrote 4 MiB each\n")
	return a.demoRun(ctx, c, "incremental (Changed Block Tracking: only what the guests wrote)")
}

func (a *app) demoRun(ctx context.Context, c *api.Client, what string) error {
	var started api.RunStarted
	if err := c.Do(ctx, http.MethodPost, api.Prefix+"/jobs/"+demoJob+"/run", nil, &started); err != nil {
		return fmt.Errorf("run job %s: %w", demoJob, err)
	}
	fmt.Fprintf(a.stdout, "%s: run %s...\n", what, started.RunID)
	for {
		var run jobs.Run
		if err := c.Do(ctx, http.MethodGet, api.Prefix+"/runs/"+started.RunID, nil, &run); err != nil {
			return err
		}
		if run.Result != jobs.ResultRunning {
			if err := a.printVMs("  ", run.VMs); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "  %s\n", runLine(run))
			if run.Result != jobs.ResultSuccess && run.Result != jobs.ResultWarning {
				return fmt.Errorf("run %s %s: %s", run.ID, run.Result, run.Error)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
