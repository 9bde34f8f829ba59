// Package lab is a vCenter that can be backed up: govmomi's simulator
// (vcsim), extended without patching it, with what a backup needs and vcsim
// lacks.
//
//   - Every virtual disk is a flat file sized to its capacity (sparse), with
//     a GPT and real filesystems on it.
//   - Guest writes go through [Lab.Write], which records the dirty areas.
//   - A snapshot freezes the disks; later writes go to a delta that is
//     merged back when the snapshot is removed.
//   - Each disk backing gets a change ID "<uuid>/<seq>" at snapshot time,
//     and QueryChangedDiskAreas works: paged, "*" for the allocated areas,
//     a fault for an unknown change ID.
//   - Every ESX host serves its datastores over HTTPS with service tickets,
//     as ESXi's /folder does.
//   - Faults can be injected: snapshot creation fails, quiescing fails, the
//     session drops.
//
// vcsim dispatches SOAP methods by reflection on the managed object, and
// lets a hook ([simulator.Registry.Handler]) or a session-scoped object stand
// in for the object. The lab uses both: see handler.go.
package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Options shape a lab. The zero value gives three VMs with two 256 MiB disks
// each on two datastores.
type Options struct {
	VMs        int   // VMs to create (default 3)
	Datastores int   // datastores, each mounted on every host (default 2)
	Disks      int   // disks per VM (default 2)
	DiskSize   int64 // capacity of each disk, a multiple of 1 MiB, at least 64 MiB (default 256 MiB)
	// FileBytes is about how many bytes of files each disk's filesystem
	// gets (default DiskSize/16).
	FileBytes int64
	// CBTBlock is the granularity of the areas CBT reports (default 64 KiB).
	CBTBlock int64
	// ChangedAreaBytes is the most bytes of changed areas one reply of
	// QueryChangedDiskAreas carries (default 16 MiB); callers must page.
	ChangedAreaBytes int64
	// Dir is scratch space for making disk images; empty means a temporary
	// directory that Close removes. (vcsim keeps the datastores in
	// temporary directories of its own, which Close removes too.)
	Dir string
	// Listen is the vCenter's address (default 127.0.0.1:0).
	Listen string
	// GuestListen is the guest API's address (default 127.0.0.1:0).
	GuestListen string
	// ApplianceVM adds a VM named "bulwark-appliance", with no disks of its
	// own, that backups can hot-add snapshot disks to.
	ApplianceVM bool
	Log         *slog.Logger
}

// ApplianceVMName is the name of the VM that [Options.ApplianceVM] adds.
const ApplianceVMName = "bulwark-appliance"

func (o *Options) defaults() error {
	if o.VMs == 0 {
		o.VMs = 3
	}
	if o.Datastores == 0 {
		o.Datastores = 2
	}
	if o.Disks == 0 {
		o.Disks = 2
	}
	if o.DiskSize == 0 {
		o.DiskSize = 256 << 20
	}
	if o.FileBytes == 0 {
		o.FileBytes = o.DiskSize / 16
	}
	if o.CBTBlock == 0 {
		o.CBTBlock = 64 << 10
	}
	if o.ChangedAreaBytes == 0 {
		o.ChangedAreaBytes = 16 << 20
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.GuestListen == "" {
		o.GuestListen = "127.0.0.1:0"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.VMs < 0 || o.VMs > 500:
		return fmt.Errorf("lab: %d VMs: from 1 to 500", o.VMs)
	case o.Datastores < 1 || o.Datastores > 16:
		return fmt.Errorf("lab: %d datastores: from 1 to 16", o.Datastores)
	case o.Disks < 1 || o.Disks > 8:
		return fmt.Errorf("lab: %d disks a VM: from 1 to 8", o.Disks)
	case o.DiskSize < 64<<20 || o.DiskSize%(1<<20) != 0:
		return fmt.Errorf("lab: disk size %d: a multiple of 1 MiB, at least 64 MiB", o.DiskSize)
	case o.CBTBlock < 512 || o.CBTBlock&(o.CBTBlock-1) != 0:
		return fmt.Errorf("lab: CBT block %d: a power of two, at least 512", o.CBTBlock)
	}
	return nil
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	opts   Options
	log    *slog.Logger
	model  *simulator.Model
	server *simulator.Server
	sim    *simulator.Context
	tmp    string // removed by Close, if the lab made it
	cert   *x509.Certificate

	datastores map[string]string // name -> directory
	hosts      map[string]*host  // by moref value
	guest      *guestServer

	mu        sync.Mutex
	vms       map[string]*vm // by moref value
	snapshots map[string]*snapshot
	faults    faults
	tickets   map[string]ticket
	overrides map[string]int // stand-ins in sessions, by session key and moref
	// Snapshots existing now, and the most ever at once, per datastore.
	active, peak map[string]int
}

// vm is the lab's side of a simulated VM: its disks' contents.
type vm struct {
	ref   types.ManagedObjectReference
	name  string
	disks map[int32]*disk // by device key
	guest map[int32]*GuestDisk
	cbt   bool // config.changeTrackingEnabled, as last reconfigured
}

// snapshot records what a snapshot froze.
type snapshot struct {
	vm         string
	seq        map[int32]int // per disk key: the CBT sequence it froze
	datastores []string
}

// Start creates the inventory, the VMs and their disks, and serves the
// vCenter, the hosts' datastores and the guest API.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	l := &Lab{opts: opts, log: opts.Log, datastores: map[string]string{}, hosts: map[string]*host{},
		vms: map[string]*vm{}, snapshots: map[string]*snapshot{}, tickets: map[string]ticket{}, overrides: map[string]int{},
		active: map[string]int{}, peak: map[string]int{}}
	started := false
	defer func() {
		if !started {
			l.Close()
		}
	}()
	var err error
	if opts.Dir == "" {
		if l.tmp, err = os.MkdirTemp("", "bulwark-lab-"); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		opts.Dir = l.tmp
	}

	m := simulator.VPX()
	m.Datastore = opts.Datastores
	m.Machine = 0 // the lab makes its own, with real disks
	m.ClusterHost = 3
	m.Host = 1
	l.model = m
	if err := m.Create(); err != nil {
		return nil, fmt.Errorf("lab: create inventory: %w", err)
	}
	m.Service.Listen = &url.URL{Host: opts.Listen, User: url.UserPassword("administrator@vsphere.local", randomSecret())}
	l.sim = m.Service.Context
	m.Map().Handler = l.handle
	m.Service.TLS = &tls.Config{MinVersion: tls.VersionTLS12} // vcsim serves plain HTTP without one
	l.server = m.Service.NewServer()
	// The certificate as a client sees it, for its thumbprint.
	conn, err := tls.Dial("tcp", l.server.URL.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, fmt.Errorf("lab: certificate: %w", err)
	}
	l.cert = conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()

	if err := l.startHosts(); err != nil {
		return nil, err
	}
	c, err := govmomi.NewClient(ctx, l.server.URL, true)
	if err != nil {
		return nil, fmt.Errorf("lab: connect to the simulator: %w", err)
	}
	defer func() { _ = c.Logout(context.WithoutCancel(ctx)) }()
	if err := l.populate(ctx, c); err != nil {
		return nil, err
	}
	if l.guest, err = l.serveGuest(); err != nil {
		return nil, err
	}
	started = true
	return l, nil
}

// Close stops the servers and removes what the lab made.
func (l *Lab) Close() {
	if l.guest != nil {
		l.guest.close()
	}
	for _, h := range l.hosts {
		h.close()
	}
	if l.server != nil {
		l.server.Close()
	}
	l.mu.Lock()
	for _, v := range l.vms {
		for _, d := range v.disks {
			d.close()
		}
	}
	l.mu.Unlock()
	if l.model != nil {
		l.model.Remove()
	}
	if l.tmp != "" {
		os.RemoveAll(l.tmp)
	}
}

// URL is the vCenter's SDK URL, with the credentials.
func (l *Lab) URL() *url.URL {
	u := *l.server.URL
	return &u
}

// Username and Password are the vCenter's credentials.
func (l *Lab) Username() string { return l.server.URL.User.Username() }

// Password is the administrator's password, random for each lab.
func (l *Lab) Password() string {
	p, _ := l.server.URL.User.Password()
	return p
}

// Certificate is the vCenter's TLS certificate.
func (l *Lab) Certificate() *x509.Certificate { return l.cert }

// Thumbprint is the SHA-1 fingerprint of the vCenter's certificate, as
// vSphere shows it.
func (l *Lab) Thumbprint() string { return soap.ThumbprintSHA1(l.Certificate()) }

// GuestURL is the base URL of the guest API.
func (l *Lab) GuestURL() string { return l.guest.url }

// VMInfo describes a lab VM.
type VMInfo struct {
	Name  string     `json:"name"`
	MoRef string     `json:"moref"`
	Disks []DiskInfo `json:"disks"`
}

// DiskInfo describes one disk of a lab VM. Index is its place among the
// VM's disks in device-key order, as the guest API and backups number them.
type DiskInfo struct {
	Index    int        `json:"index"`
	Key      int32      `json:"key"`
	Capacity int64      `json:"capacity"`
	File     string     `json:"file"`
	Guest    *GuestDisk `json:"-"`
}

// VMs lists the lab's VMs by name.
func (l *Lab) VMs() []VMInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []VMInfo
	for _, v := range l.vms {
		info := VMInfo{Name: v.name, MoRef: v.ref.Value}
		for i, key := range v.diskKeys() {
			d := v.disks[key]
			d.mu.RLock()
			info.Disks = append(info.Disks, DiskInfo{Index: i, Key: key, Capacity: d.capacity,
				File: d.layers[0].dsPath, Guest: v.guest[key]})
			d.mu.RUnlock()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (v *vm) diskKeys() []int32 {
	keys := make([]int32, 0, len(v.disks))
	for k := range v.disks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// ErrNotFound is returned for a VM or disk the lab does not have.
var ErrNotFound = errors.New("not found")

// lookup finds a VM by name or moref, and one of its disks by index.
func (l *Lab) lookup(name string, index int) (*vm, *disk, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.vms {
		if v.name != name && v.ref.Value != name {
			continue
		}
		keys := v.diskKeys()
		if index < 0 || index >= len(keys) {
			return v, nil, fmt.Errorf("VM %s has no disk %d: %w", v.name, index, ErrNotFound)
		}
		return v, v.disks[keys[index]], nil
	}
	return nil, nil, fmt.Errorf("VM %q: %w", name, ErrNotFound)
}

// Write writes p into a disk of a VM at off, as the guest would.
func (l *Lab) Write(vmName string, index int, off int64, p []byte) error {
	_, d, err := l.lookup(vmName, index)
	if err != nil {
		return err
	}
	return d.write(p, off)
}

// Disk returns a reader of a VM's disk as the guest sees it now, and its size.
func (l *Lab) Disk(vmName string, index int) (*Reader, error) {
	_, d, err := l.lookup(vmName, index)
	if err != nil {
		return nil, err
	}
	return &Reader{d: d, layer: -1}, nil
}

// Reader reads a lab disk, live or as a snapshot froze it.
type Reader struct {
	d     *disk
	layer int // -1: live
}

// Size is the disk's capacity.
func (r *Reader) Size() int64 {
	r.d.mu.RLock()
	defer r.d.mu.RUnlock()
	return r.d.capacity
}

// ReadAt implements io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	r.d.mu.RLock()
	defer r.d.mu.RUnlock()
	top := r.layer
	if top < 0 || top >= len(r.d.layers) {
		top = len(r.d.layers) - 1
	}
	return r.d.readAt(p, off, top)
}

// ResetCBT forgets a VM's change tracking, as disabling and enabling CBT
// does: every change ID handed out before becomes unknown.
func (l *Lab) ResetCBT(vmName string) error {
	v, _, err := l.lookup(vmName, 0)
	if v == nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range v.disks {
		d.resetCBT(v.cbt)
	}
	l.log.Info("CBT reset", "vm", v.name)
	return nil
}

// PeakSnapshots returns the most snapshots that existed at once on each
// datastore, counting a VM's snapshot once for every datastore its disks
// are on.
func (l *Lab) PeakSnapshots() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.peak {
		out[k] = v
	}
	return out
}

// datastorePath turns "[ds] dir/file" into a path under the datastore's
// directory, refusing anything that would leave it.
func (l *Lab) datastorePath(dsPath string) (string, error) {
	var p object.DatastorePath
	if !p.FromString(dsPath) {
		return "", fmt.Errorf("datastore path %q: not [datastore] path", dsPath)
	}
	dir, ok := l.datastores[p.Datastore]
	if !ok {
		return "", fmt.Errorf("datastore path %q: no datastore %q", dsPath, p.Datastore)
	}
	return filepath.Join(dir, filepath.FromSlash(path.Clean("/"+p.Path))), nil
}

// OpenAttached is the lab's device resolver for hot-add: it maps the file of
// a disk attached to the appliance VM to the state a snapshot froze in it.
func (l *Lab) OpenAttached(fileName string) (*Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.vms {
		for _, d := range v.disks {
			d.mu.RLock()
			for i, layer := range d.layers {
				if layer.dsPath != fileName {
					continue
				}
				frozen := layer.frozenBy != ""
				d.mu.RUnlock()
				if !frozen {
					return nil, fmt.Errorf("%s is in use by %s: only a snapshot's disk can be hot-added", fileName, v.name)
				}
				return &Reader{d: d, layer: i}, nil
			}
			d.mu.RUnlock()
		}
	}
	return nil, fmt.Errorf("disk %s: %w", fileName, ErrNotFound)
}

// Snapshots counts the snapshots that exist now on the lab's VMs.
func (l *Lab) Snapshots() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.snapshots)
}
