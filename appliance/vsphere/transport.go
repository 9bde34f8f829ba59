package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Transport reads the disks of a VM's snapshot.
type Transport interface {
	// Open gives a reader of one disk as the snapshot froze it. snapshot
	// holds the disk's device as the snapshot's configuration lists it.
	Open(ctx context.Context, vm *mo.VirtualMachine, disk *types.VirtualDisk) (DiskReader, error)
	Name() string
}

// DiskReader reads one disk of a snapshot. Closing it releases what the
// transport took to read it: a hot-added disk is detached.
type DiskReader interface {
	io.ReaderAt
	Close() error
	// BytesRead counts the bytes the transport fetched.
	BytesRead() int64
}

// HTTPTransport reads flat extents over the datastore HTTP interface of the
// VM's own host, with ranged GETs under a generic service ticket: the data
// goes from the host to the appliance without passing through vCenter.
type HTTPTransport struct{ c *Client }

// HTTP returns the datastore HTTP transport.
func (c *Client) HTTP() *HTTPTransport { return &HTTPTransport{c: c} }

// Name implements Transport.
func (t *HTTPTransport) Name() string { return "http" }

// Open implements Transport.
func (t *HTTPTransport) Open(ctx context.Context, vm *mo.VirtualMachine, disk *types.VirtualDisk) (DiskReader, error) {
	b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return nil, fmt.Errorf("disk %d: a %T backing has no flat extent to read over HTTP", disk.Key, disk.Backing)
	}
	if b.Parent != nil {
		return nil, fmt.Errorf("disk %d: %s is a delta of a snapshot chain; the HTTP transport reads flat extents only (consolidate the VM's snapshots, or use hot-add)", disk.Key, b.FileName)
	}
	base, err := t.c.flatURL(ctx, vm, disk)
	if err != nil {
		return nil, err
	}
	r := &httpDisk{c: t.c, ctx: ctx, base: base, size: disk.CapacityInBytes}
	if err := r.renew(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// flatURL is where the VM's host serves a disk's flat extent.
func (c *Client) flatURL(ctx context.Context, vm *mo.VirtualMachine, disk *types.VirtualDisk) (string, error) {
	b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return "", fmt.Errorf("disk %d: a %T backing has no flat extent", disk.Key, disk.Backing)
	}
	var p object.DatastorePath
	if !p.FromString(b.FileName) {
		return "", fmt.Errorf("disk %d: backing file %q is not a datastore path", disk.Key, b.FileName)
	}
	if vm.Runtime.Host == nil {
		return "", fmt.Errorf("disk %d: the VM has no host", disk.Key)
	}
	addr, err := hostAddress(ctx, object.NewHostSystem(c.vim, *vm.Runtime.Host))
	if err != nil {
		return "", err
	}
	u := &url.URL{Scheme: "https", Host: addr, Path: "/folder/" + strings.TrimSuffix(p.Path, ".vmdk") + "-flat.vmdk",
		RawQuery: url.Values{"dsName": {p.Datastore}}.Encode()}
	return u.String(), nil
}

// serviceTicket asks vCenter for a ticket to one URL on a host, for one
// method. The ticket names where to go (the host's address and port) and
// the host's certificate thumbprint, which the client then pins.
func (c *Client) serviceTicket(ctx context.Context, base string, method types.SessionManagerHttpServiceRequestSpecMethod) (*url.URL, *http.Cookie, error) {
	spec := types.SessionManagerHttpServiceRequestSpec{Url: base, Method: string(method)}
	tk, err := session.NewManager(c.vim).AcquireGenericServiceTicket(ctx, &spec)
	if err != nil {
		return nil, nil, fmt.Errorf("service ticket for %s: %s", base, faultText(err))
	}
	u, _ := url.Parse(base)
	if tk.HostName != "" && tk.HostName != "localhost.localdomain" {
		u.Host = tk.HostName
	}
	if tk.SslThumbprint != "" {
		c.vim.SetThumbprint(u.Host, tk.SslThumbprint)
	}
	return u, &http.Cookie{Name: "vmware_cgi_ticket", Value: tk.Id}, nil
}

// hostAddress is where a host serves its datastores: its management
// address, or its inventory name (an FQDN or IP, as it was added).
func hostAddress(ctx context.Context, host *object.HostSystem) (string, error) {
	ips, err := host.ManagementIPs(ctx)
	if err != nil {
		return "", fmt.Errorf("host %s: management address: %w", host.Reference().Value, err)
	}
	if len(ips) > 0 {
		return ips[0].String(), nil
	}
	var h mo.HostSystem
	if err := property.DefaultCollector(host.Client()).RetrieveOne(ctx, host.Reference(), []string{"name"}, &h); err != nil {
		return "", fmt.Errorf("host %s: %w", host.Reference().Value, err)
	}
	return h.Name, nil
}

// httpDisk reads a flat extent with ranged GETs.
type httpDisk struct {
	c    *Client
	ctx  context.Context
	size int64
	read atomic.Int64

	base string // the URL on the host's management address, which tickets are asked for

	mu     sync.Mutex
	url    *url.URL // base, at the address and port the ticket names
	cookie *http.Cookie
}

// renew asks vCenter for a service ticket for the extent on its host.
func (r *httpDisk) renew(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, cookie, err := r.c.serviceTicket(ctx, r.base, types.SessionManagerHttpServiceRequestSpecMethodHttpGet)
	if err != nil {
		return err
	}
	r.url, r.cookie = u, cookie
	return nil
}

// errTicket is a refused ticket: expired, most likely.
var errTicket = errors.New("service ticket refused")

// ReadAt implements io.ReaderAt with one ranged GET; the server must answer
// 206 with exactly the range.
func (r *httpDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if int64(len(want)) > r.size-off {
		want = want[:r.size-off]
	}
	if len(want) == 0 {
		return 0, nil
	}
	err := r.get(want, off)
	if errors.Is(err, errTicket) {
		if err = r.renew(r.ctx); err == nil {
			err = r.get(want, off)
		}
	}
	if err != nil {
		return 0, err
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(p), nil
}

func (r *httpDisk) get(p []byte, off int64) error {
	r.mu.Lock()
	u, cookie := r.url.String(), r.cookie
	r.mu.Unlock()
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.AddCookie(cookie)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1))
	return r.c.vim.Do(r.ctx, req, func(res *http.Response) error {
		switch res.StatusCode {
		case http.StatusPartialContent:
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("GET %s: %s: %w", u, res.Status, errTicket)
		default:
			return fmt.Errorf("GET %s bytes %d+%d: %s, not 206 Partial Content", u, off, len(p), res.Status)
		}
		n, err := io.ReadFull(res.Body, p)
		r.read.Add(int64(n))
		if err != nil {
			return fmt.Errorf("GET %s bytes %d+%d: short body: %w", u, off, len(p), err)
		}
		return nil
	})
}

// Close implements DiskReader.
func (r *httpDisk) Close() error { return nil }

// BytesRead implements DiskReader.
func (r *httpDisk) BytesRead() int64 { return r.read.Load() }
