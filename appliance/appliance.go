package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/certs"
	"github.com/bulwarkbackup/bulwark/appliance/config"
	"github.com/bulwarkbackup/bulwark/appliance/events"
	"github.com/bulwarkbackup/bulwark/appliance/metrics"
	"github.com/bulwarkbackup/bulwark/appliance/notify"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// ErrShuttingDown is the cause of the cancellation of the runs and tasks
// that the appliance stops when it shuts down.
var ErrShuttingDown = errors.New("the appliance is shutting down")

// Options configure an Appliance.
type Options struct {
	Config *config.Config
	// AdminPassword is the first admin's password, as
	// BULWARK_ADMIN_PASSWORD gives it; empty means generate one and print
	// it once.
	AdminPassword string
	// Notices receives what an operator must see once: the certificate's
	// fingerprint, a generated admin password.
	Notices io.Writer
	// Resolve finds the devices of hot-added disks.
	Resolve vsphere.DeviceResolver
	Version string
	Log     *slog.Logger
}

// An Appliance is the running service: the store, the state, the vCenters,
// the job runner and scheduler, and the HTTPS API over them.
type Appliance struct {
	cfg   *config.Config
	log   *slog.Logger
	store *chunkstore.Store
	db    *badger.DB
	state *jobs.State
	auth  *auth.Store
	tasks *tasks.Manager
	hub   *events.Hub
	fleet *Fleet

	runner    *jobs.Runner
	scheduler *jobs.Scheduler
	api       *api.Server
	browse    *api.Browser
	cert      tls.Certificate

	runCtx    context.Context
	stopRuns  context.CancelCauseFunc
	listener  net.Listener
	closeOnce sync.Once
	closeErr  error
}

// Open opens, or on first start creates, everything the appliance owns,
// and listens on the configured address. Serve then serves.
func Open(ctx context.Context, o Options) (a *Appliance, err error) {
	cfg := o.Config
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	notices := o.Notices
	if notices == nil {
		notices = io.Discard
	}
	a = &Appliance{cfg: cfg, log: log}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	a.store, err = openStore(ctx, cfg.Store, log, notices)
	if err != nil {
		return nil, err
	}
	closers = append(closers, a.store.Close)

	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	a.db, err = jobs.OpenDB(filepath.Join(cfg.State, "db"), log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, a.db.Close)
	if a.state, err = jobs.NewState(a.db, log); err != nil {
		return nil, err
	}
	if a.auth, err = auth.Open(a.db, auth.Options{Log: log, SessionTTL: time.Duration(cfg.SessionTTL)}); err != nil {
		return nil, err
	}
	if err := a.firstAdmin(ctx, o.AdminPassword, notices); err != nil {
		return nil, err
	}
	if err := a.syncVCenters(); err != nil {
		return nil, err
	}

	certFile, keyFile := cfg.TLSFiles()
	cert, created, err := certs.LoadOrCreate(certFile, keyFile, cfg.TLS.Hosts)
	if err != nil {
		return nil, err
	}
	a.cert = cert
	fp := certs.Fingerprint(cert.Certificate[0])
	if created {
		fmt.Fprintf(notices, "created a self-signed certificate %s\nits SHA-256 fingerprint: %s\n", certFile, fp)
	}
	log.Info("certificate", "file", certFile, "sha256", fp)

	a.hub = events.NewHub(0)
	m := metrics.New(metrics.Options{
		StoreStats: func(ctx context.Context) (metrics.StoreStats, error) {
			st, err := a.store.Stats(ctx)
			if err != nil {
				return metrics.StoreStats{}, err
			}
			return metrics.StoreStats{Points: st.Points, LogicalBytes: st.LogicalBytes, DataBytes: st.DataBytes,
				UniqueBytes: st.UniqueBytes, StoredBytes: st.StoredBytes, DedupRatio: st.DedupRatio,
				CompressionRatio: st.CompressionRatio, Packs: st.Packs}, nil
		},
		TasksRunning: func() int { return a.tasks.Running() },
		JobsRunning:  func() int { return len(a.runner.Running()) },
	})
	if a.tasks, err = tasks.NewManager(tasks.Options{Hub: a.hub, DB: a.db, Log: log,
		OnFinish: func(t tasks.Task) { m.ObserveTask(t.Kind, string(t.State), t.Ended.Sub(t.Started)) }}); err != nil {
		return nil, err
	}
	tracker := api.NewJobTracker(a.tasks, a.hub, m, log)
	if a.fleet, err = NewFleet(FleetOptions{State: a.state, Store: a.store, Transport: cfg.Runner.Transport,
		ApplianceVM: cfg.Runner.ApplianceVM, Resolve: o.Resolve, Progress: tracker.VMProgress, Log: log}); err != nil {
		return nil, err
	}
	closers = append(closers, func() error { a.fleet.Close(context.Background()); return nil })
	progress := tracker.Event
	if cfg.SMTP != nil {
		pw, err := cfg.SMTP.Password()
		if err != nil {
			return nil, err
		}
		mailer := notify.NewMailer(*cfg.SMTP, pw, log)
		progress = func(e jobs.Event) {
			tracker.Event(e)
			if e.Kind == jobs.EventRunEnded && mailer.Wants(e.Run.Result) {
				go mailRun(mailer, e.Run, log)
			}
		}
	}
	if a.runner, err = jobs.NewRunner(jobs.RunnerConfig{Inventory: a.fleet, Backuper: a.fleet, Retainer: a.fleet,
		State: a.state, Concurrency: cfg.Runner.Concurrency, SnapshotsPerDatastore: cfg.Runner.SnapshotsPerDatastore,
		Progress: progress, Log: log}); err != nil {
		return nil, err
	}
	tracker.Cancel = a.runner.Cancel
	a.scheduler = jobs.NewScheduler(a.runner, log)
	a.runCtx, a.stopRuns = context.WithCancelCause(context.WithoutCancel(ctx))
	closers = append(closers, func() error { a.stopRuns(ErrShuttingDown); return nil })

	// The file-level sessions read the store: they end before it closes.
	a.browse = api.NewBrowser(a.store, api.BrowseOptions{})
	closers = append(closers, func() error { a.browse.Close(); return nil })
	if a.api, err = api.New(api.Deps{Auth: a.auth, State: a.state, Runner: a.runner, Scheduler: a.scheduler,
		Store: a.store, VCenters: a.fleet, Tasks: a.tasks, Hub: a.hub, Metrics: m, Jobs: tracker, Browse: a.browse,
		RunContext: a.runCtx, Version: o.Version, Log: log}); err != nil {
		return nil, err
	}
	if a.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	return a, nil
}

// openStore opens the store, creating it first if it is absent and the
// configuration allows.
func openStore(ctx context.Context, c config.Store, log *slog.Logger, notices io.Writer) (*chunkstore.Store, error) {
	pw, err := c.Password()
	if err != nil {
		return nil, fmt.Errorf("store password: %w", err)
	}
	be := backend.NewLocal(c.Path)
	if _, err := os.Stat(filepath.Join(c.Path, "config")); errors.Is(err, os.ErrNotExist) && c.Create {
		if err := chunkstore.Init(ctx, be, chunkstore.InitOptions{Password: pw, Params: chunkstore.DefaultParams()}); err != nil {
			return nil, err
		}
		fmt.Fprintf(notices, "created store %s\n", c.Path)
	}
	return chunkstore.Open(ctx, be, chunkstore.Options{Password: pw, Logger: log, Purpose: "appliance"})
}

// firstAdmin creates the admin account when there is no user yet.
func (a *Appliance) firstAdmin(ctx context.Context, password string, notices io.Writer) error {
	generated := password == ""
	if generated {
		var err error
		if password, err = auth.GeneratePassword(); err != nil {
			return err
		}
	}
	created, err := a.auth.EnsureAdmin(ctx, a.cfg.AdminUser, password)
	if err != nil {
		return fmt.Errorf("first admin: %w", err)
	}
	switch {
	case created && generated:
		fmt.Fprintf(notices, "created user %s with password %s\n(shown once: set BULWARK_ADMIN_PASSWORD to choose it)\n", a.cfg.AdminUser, password)
	case created:
		fmt.Fprintf(notices, "created user %s with the password in BULWARK_ADMIN_PASSWORD\n", a.cfg.AdminUser)
	}
	return nil
}

// syncVCenters writes the configuration's vCenters into the state, with
// their passwords sealed, and removes those that left the configuration
// unless jobs still use them.
func (a *Appliance) syncVCenters() error {
	inConfig := map[string]bool{}
	for _, vc := range a.cfg.VCenters {
		pw, err := vc.Password()
		if err != nil {
			return fmt.Errorf("vCenter %s: %w", vc.Name, err)
		}
		rec := jobs.VCenter{Name: vc.Name, URL: vc.URL, Username: vc.Username, Thumbprint: vc.Thumbprint,
			Insecure: vc.Insecure, FromConfig: true}
		rec.PasswordSealed = a.store.SealSecret(passwordPurpose(vc.Name), pw)
		if err := a.state.PutVCenter(rec); err != nil {
			return err
		}
		inConfig[vc.Name] = true
	}
	stored, err := a.state.VCenters()
	if err != nil {
		return err
	}
	for _, v := range stored {
		if !v.FromConfig || inConfig[v.Name] {
			continue
		}
		if err := a.state.DeleteVCenter(v.Name); err != nil {
			a.log.Warn("a vCenter left the configuration but stays: jobs use it", "vcenter", v.Name, "err", err)
		}
	}
	return nil
}

func mailRun(m *notify.Mailer, r *jobs.Run, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	subject := fmt.Sprintf("Bulwark: job %s %s", r.Job, r.Result)
	body := fmt.Sprintf("Run %s of job %s (%s) started %s and ended %s: %s.\n", r.ID, r.Job, r.Trigger,
		r.Started.Format(time.RFC1123), r.Ended.Format(time.RFC1123), r.Result)
	if r.Error != "" {
		body += "\n" + r.Error + "\n"
	}
	for _, v := range r.VMs {
		body += fmt.Sprintf("\n%s: %s", v.Name, v.Result)
		if v.Error != "" {
			body += ": " + v.Error
		}
	}
	if err := m.Send(ctx, subject, body+"\n"); err != nil {
		log.Warn("cannot mail the result of a run", "job", r.Job, "run", r.ID, "err", err)
	}
}

// Addr is the address the appliance listens on.
func (a *Appliance) Addr() net.Addr { return a.listener.Addr() }

// URL is the appliance's https URL on its listening address.
func (a *Appliance) URL() string {
	addr := a.listener.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// Certificate is the certificate the appliance serves.
func (a *Appliance) Certificate() tls.Certificate { return a.cert }

// State is the appliance's job state, for tools that run beside the API.
func (a *Appliance) State() *jobs.State { return a.state }

// Auth is the appliance's user store.
func (a *Appliance) Auth() *auth.Store { return a.auth }

// shutdownGrace bounds how long requests under way may take to finish.
const shutdownGrace = 10 * time.Second

// Serve serves the API and runs the scheduler until ctx ends, then shuts
// down: it stops taking requests, cancels the runs and tasks under way
// (their snapshots are removed and no partial point is made), waits for
// them, and closes everything.
func (a *Appliance) Serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           a.api.Handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{a.cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	// The event streams last as long as their clients: closing the hub
	// ends them, so that Shutdown does not wait for the grace in vain.
	srv.RegisterOnShutdown(a.hub.Close)

	schedCtx, stopScheduler := context.WithCancelCause(a.runCtx)
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		_ = a.scheduler.Run(schedCtx)
	}()
	purgeDone := make(chan struct{})
	go func() {
		defer close(purgeDone)
		a.purgeLoop(schedCtx)
	}()

	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(a.listener, "", "") }()
	a.log.Info("appliance serving", "url", a.URL())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	a.log.Info("appliance shutting down", "cause", context.Cause(ctx))
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		a.log.Warn("requests cut short", "err", err)
	}
	stopScheduler(ErrShuttingDown)
	a.stopRuns(ErrShuttingDown)
	<-schedDone
	<-purgeDone
	a.runner.Wait()
	if err := a.tasks.Shutdown(context.WithoutCancel(ctx)); err != nil {
		a.log.Warn("tasks did not stop", "err", err)
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, a.Close())
}

// purgeLoop deletes expired sessions and tokens every hour.
func (a *Appliance) purgeLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := a.auth.PurgeExpired(); err != nil {
			a.log.Warn("cannot purge expired sessions", "err", err)
		} else if n > 0 {
			a.log.Info("purged expired sessions and tokens", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close closes what Open opened; Serve calls it as it returns.
func (a *Appliance) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.close() })
	return a.closeErr
}

func (a *Appliance) close() error {
	a.stopRuns(ErrShuttingDown)
	a.runner.Wait()
	a.browse.Close()
	_ = a.listener.Close()
	a.fleet.Close(context.Background())
	var errs []error
	if err := a.state.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := a.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close state: %w", err))
	}
	if err := a.store.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Routes lists the API's endpoints.
func (a *Appliance) Routes() []api.Route { return a.api.Routes() }
