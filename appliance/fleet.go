package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// passwordPurpose is what a vCenter's password is sealed for in the store.
func passwordPurpose(vcenter string) string { return "vcenter-password/" + vcenter }

// VCenterConfig is how to connect to v: its password comes from the
// environment variable it names, or is opened with store's key. store may
// be nil for vCenters whose password is in the environment.
func VCenterConfig(v jobs.VCenter, store *chunkstore.Store) (vsphere.Config, error) {
	cfg := vsphere.Config{URL: v.URL, Username: v.Username, Thumbprint: v.Thumbprint, Insecure: v.Insecure}
	switch {
	case len(v.PasswordSealed) > 0:
		if store == nil {
			return vsphere.Config{}, fmt.Errorf("vCenter %s: its password is sealed in the store, which is not open", v.Name)
		}
		pw, err := store.OpenSecret(passwordPurpose(v.Name), v.PasswordSealed)
		if err != nil {
			return vsphere.Config{}, fmt.Errorf("vCenter %s: %w (was the state made with another store?)", v.Name, err)
		}
		cfg.Password = string(pw)
	default:
		pw, ok := os.LookupEnv(v.PasswordEnv)
		if !ok || pw == "" {
			return vsphere.Config{}, fmt.Errorf("vCenter %s: its password is read from $%s, which is not set", v.Name, v.PasswordEnv)
		}
		cfg.Password = pw
	}
	return cfg, nil
}

// FleetOptions configure a Fleet.
type FleetOptions struct {
	State *jobs.State
	Store *chunkstore.Store

	// Transport is "http" (the default) or "hotadd"; with hotadd,
	// ApplianceVM names the VM the appliance runs in and Resolve finds the
	// devices of the disks attached to it.
	Transport   string
	ApplianceVM string
	Resolve     vsphere.DeviceResolver

	// Progress, if set, is told how far each disk of each VM has been read.
	Progress func(vm string, disk int, done, total int64)
	Log      *slog.Logger
}

// A Fleet holds the appliance's connections to its vCenters, made when
// first needed and remade when a vCenter's record changes, and serves the
// job runner for all of them: it is its Inventory, Backuper and Retainer.
type Fleet struct {
	o   FleetOptions
	log *slog.Logger

	mu    sync.Mutex
	conns map[string]*fleetConn // by vCenter name
	swept map[string]bool       // vCenters whose orphan snapshots were removed
}

type fleetConn struct {
	rec     jobs.VCenter
	backups *Backups
}

var (
	_ jobs.Inventory = (*Fleet)(nil)
	_ jobs.Backuper  = (*Fleet)(nil)
	_ jobs.Retainer  = (*Fleet)(nil)
)

// NewFleet returns a Fleet that has not connected yet.
func NewFleet(o FleetOptions) (*Fleet, error) {
	if o.State == nil || o.Store == nil {
		return nil, errors.New("new fleet: State and Store are required")
	}
	switch o.Transport {
	case "", "http":
	case "hotadd":
		if o.ApplianceVM == "" || o.Resolve == nil {
			return nil, errors.New("new fleet: hot-add needs the appliance VM and a device resolver")
		}
	default:
		return nil, fmt.Errorf("new fleet: unknown transport %q: http or hotadd", o.Transport)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fleet{o: o, log: log, conns: map[string]*fleetConn{}, swept: map[string]bool{}}, nil
}

// Client returns a connection to the vCenter called name, connecting if
// there is none yet or its record changed since. The first connection to
// a vCenter in a process removes the snapshots that backups of an earlier,
// killed process left behind: no backup of this process can have started
// on it yet.
func (f *Fleet) Client(ctx context.Context, name string) (*vsphere.Client, error) {
	b, err := f.backups(ctx, name)
	if err != nil {
		return nil, err
	}
	return b.VCenter, nil
}

func (f *Fleet) backups(ctx context.Context, name string) (*Backups, error) {
	rec, err := f.o.State.VCenter(name)
	if err != nil {
		return nil, err
	}
	// Connecting holds the lock: two jobs starting together on a new
	// vCenter make one connection, and a slow vCenter delays only the
	// others' first connections.
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.conns[name]; c != nil {
		if sameVCenter(c.rec, rec) {
			return c.backups, nil
		}
		f.closeLocked(ctx, name)
	}
	cfg, err := VCenterConfig(rec, f.o.Store)
	if err != nil {
		return nil, err
	}
	client, err := vsphere.Connect(ctx, cfg, f.log.With("vcenter", name))
	if err != nil {
		return nil, fmt.Errorf("vCenter %s: %w", name, err)
	}
	b := &Backups{VCenter: client, Store: f.o.Store, Progress: f.o.Progress, Log: f.log}
	if f.o.Transport == "hotadd" {
		av, err := client.FindVM(ctx, f.o.ApplianceVM)
		if err != nil {
			_ = client.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("vCenter %s: appliance VM: %w", name, err)
		}
		b.Transport = client.HotAdd(types.ManagedObjectReference{Type: "VirtualMachine", Value: av.MoRef}, f.o.Resolve)
	}
	if !f.swept[name] {
		removed, err := b.RemoveOrphanSnapshots(ctx)
		for _, o := range removed {
			f.log.Warn("removed a snapshot that an earlier backup left", "vcenter", name, "vm", o.VMName, "snapshot", o.Name)
		}
		if err != nil {
			_ = client.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("vCenter %s: remove leftover snapshots: %w", name, err)
		}
		f.swept[name] = true
	}
	f.conns[name] = &fleetConn{rec: rec, backups: b}
	return b, nil
}

// sameVCenter reports whether a connection made for a still serves b.
func sameVCenter(a, b jobs.VCenter) bool {
	return a.URL == b.URL && a.Username == b.Username && a.PasswordEnv == b.PasswordEnv &&
		string(a.PasswordSealed) == string(b.PasswordSealed) && a.Thumbprint == b.Thumbprint && a.Insecure == b.Insecure
}

// Forget closes the connection to the vCenter called name, if any: the
// appliance calls it when the vCenter is removed.
func (f *Fleet) Forget(ctx context.Context, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closeLocked(ctx, name)
}

func (f *Fleet) closeLocked(ctx context.Context, name string) {
	c := f.conns[name]
	if c == nil {
		return
	}
	delete(f.conns, name)
	if err := c.backups.VCenter.Close(context.WithoutCancel(ctx)); err != nil {
		f.log.Warn("log out of vCenter", "vcenter", name, "err", err)
	}
}

// Close logs out of every vCenter.
func (f *Fleet) Close(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name := range f.conns {
		f.closeLocked(ctx, name)
	}
}

// Seal returns v with password sealed into it under the store's key, for
// the appliance to keep in its state.
func (f *Fleet) Seal(v jobs.VCenter, password []byte) jobs.VCenter {
	v.PasswordEnv = ""
	v.PasswordSealed = f.o.Store.SealSecret(passwordPurpose(v.Name), password)
	return v
}

// Test logs in to v, with password or, if that is nil, the password v's
// record gives, and returns the vCenter's instance UUID. It keeps no
// connection.
func (f *Fleet) Test(ctx context.Context, v jobs.VCenter, password []byte) (string, error) {
	var cfg vsphere.Config
	if password != nil {
		cfg = vsphere.Config{URL: v.URL, Username: v.Username, Password: string(password), Thumbprint: v.Thumbprint, Insecure: v.Insecure}
	} else {
		var err error
		if cfg, err = VCenterConfig(v, f.o.Store); err != nil {
			return "", err
		}
	}
	c, err := vsphere.Connect(ctx, cfg, f.log.With("vcenter", v.Name))
	if err != nil {
		return "", err
	}
	uuid := c.InstanceUUID()
	if err := c.Close(context.WithoutCancel(ctx)); err != nil {
		f.log.Warn("log out of vCenter", "vcenter", v.Name, "err", err)
	}
	return uuid, nil
}

// RestoreTarget returns the vCenter where a point's VM lived, as a
// restore target: the vCenter called name, or when name is empty the one
// whose instance UUID the point's source records. With hot-add configured,
// its disks are written through the appliance VM.
func (f *Fleet) RestoreTarget(ctx context.Context, name, instance string) (*vsphere.RestoreTarget, error) {
	if name == "" {
		records, err := f.o.State.VCenters()
		if err != nil {
			return nil, err
		}
		for _, rec := range records {
			b, err := f.backups(ctx, rec.Name)
			if err != nil {
				f.log.Warn("vCenter unreachable while looking for a point's", "vcenter", rec.Name, "err", err)
				continue
			}
			if b.VCenter.InstanceUUID() == instance {
				name = rec.Name
				break
			}
		}
		if name == "" {
			return nil, fmt.Errorf("no vCenter of the appliance has instance %s: name the vCenter to restore to", instance)
		}
	}
	b, err := f.backups(ctx, name)
	if err != nil {
		return nil, err
	}
	hotAdd, _ := b.Transport.(*vsphere.HotAddTransport)
	return b.VCenter.RestoreTarget(hotAdd), nil
}

// VMs implements jobs.Inventory.
func (f *Fleet) VMs(ctx context.Context, vcenter string) ([]jobs.Target, error) {
	b, err := f.backups(ctx, vcenter)
	if err != nil {
		return nil, err
	}
	return b.VMs(ctx, vcenter)
}

// BackupVM implements jobs.Backuper.
func (f *Fleet) BackupVM(ctx context.Context, req jobs.BackupRequest) (jobs.BackupResult, error) {
	b, err := f.backups(ctx, req.VCenter)
	if err != nil {
		return jobs.BackupResult{}, err
	}
	return b.BackupVM(ctx, req)
}

// Retain implements jobs.Retainer.
func (f *Fleet) Retain(ctx context.Context, job string, p retention.Policy) error {
	b := &Backups{Store: f.o.Store, Log: f.log}
	return b.Retain(ctx, job, p)
}
