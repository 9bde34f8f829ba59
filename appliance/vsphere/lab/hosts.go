package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// host is an ESX host's HTTPS endpoint: its datastores under /folder, for
// holders of a service ticket issued for that host.
type host struct {
	ref        types.ManagedObjectReference
	name       string
	ip         string // its management address, distinct per host
	addr       string // ip:port
	thumbprint string // SHA-1 of its certificate
	datastores map[string]bool
	srv        *http.Server
}

func (h *host) close() { _ = h.srv.Close() }

// ticket is a generic service ticket: good for one URL and method on one
// host, for a while.
type ticket struct {
	host    string
	path    string
	dsName  string
	method  string
	expires time.Time
}

// ticketLifetime bounds how long a backup may use one ticket before asking
// for another.
const ticketLifetime = 10 * time.Minute

// startHosts gives every host a management address of its own on the
// loopback network (127.0.0.11, .12, ...) and serves its datastores there,
// so that a transfer pinned to a host really goes to that host.
func (l *Lab) startHosts() error {
	objs := l.model.Map().All("HostSystem")
	sort.Slice(objs, func(i, j int) bool { return objs[i].Entity().Name < objs[j].Entity().Name })
	lock := &simulator.Context{Map: l.model.Map()}
	for i, obj := range objs {
		hs := obj.(*simulator.HostSystem)
		h := &host{ref: hs.Self, ip: fmt.Sprintf("127.0.0.%d", 11+i), datastores: map[string]bool{}}
		l.model.Map().WithLock(lock, hs, func() {
			h.name = hs.Name
			setManagementIP(hs, h.ip)
			for _, ref := range hs.Datastore {
				if ds, ok := l.model.Map().Get(ref).(*simulator.Datastore); ok {
					h.datastores[ds.Name] = true
				}
			}
		})
		cert, err := selfSigned(h.name, h.ip)
		if err != nil {
			return fmt.Errorf("lab: host %s: %w", h.name, err)
		}
		ln, err := tls.Listen("tcp", net.JoinHostPort(h.ip, "0"), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return fmt.Errorf("lab: host %s: listen on %s (the lab needs the loopback network 127.0.0.0/8): %w", h.name, h.ip, err)
		}
		h.addr = ln.Addr().String()
		h.thumbprint = soap.ThumbprintSHA1(cert.Leaf)
		h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { l.serveFolder(h, w, r) }),
			ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = h.srv.Serve(ln) }()
		l.hosts[hs.Self.Value] = h
	}
	return nil
}

// setManagementIP makes ip the address of the host's management vmknic.
func setManagementIP(hs *simulator.HostSystem, ip string) {
	if hs.Config == nil || hs.Config.VirtualNicManagerInfo == nil {
		return
	}
	for i := range hs.Config.VirtualNicManagerInfo.NetConfig {
		nc := &hs.Config.VirtualNicManagerInfo.NetConfig[i]
		if nc.NicType != string(types.HostVirtualNicManagerNicTypeManagement) {
			continue
		}
		for j := range nc.CandidateVnic {
			if nc.CandidateVnic[j].Spec.Ip != nil {
				nc.CandidateVnic[j].Spec.Ip.IpAddress = ip
			}
		}
	}
	if hs.Config.Network != nil && len(hs.Config.Network.Vnic) > 0 && hs.Config.Network.Vnic[0].Spec.Ip != nil {
		hs.Config.Network.Vnic[0].Spec.Ip.IpAddress = ip
	}
}

func selfSigned(name, ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip)}, DNSNames: []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ticketIssuer stands in for the SessionManager in AcquireGenericServiceTicket:
// vcsim's own issues tickets that nothing checks.
type ticketIssuer struct {
	*simulator.SessionManager
	Self types.ManagedObjectReference // see vmHandler
	lab  *Lab
}

// AcquireGenericServiceTicket issues a ticket for a URL on one of the hosts.
func (t *ticketIssuer) AcquireGenericServiceTicket(ctx *simulator.Context, req *types.AcquireGenericServiceTicket) soap.HasFault {
	defer t.lab.release(ctx, t.Self)
	body := &methods.AcquireGenericServiceTicketBody{}
	tk, err := t.lab.issueTicket(req.Spec)
	if err != nil {
		body.Fault_ = simulator.Fault(err.Error(), &types.InvalidArgument{InvalidProperty: "spec"})
		return body
	}
	body.Res = &types.AcquireGenericServiceTicketResponse{Returnval: tk}
	return body
}

var ticketMethods = map[string]string{
	string(types.SessionManagerHttpServiceRequestSpecMethodHttpGet):  http.MethodGet,
	string(types.SessionManagerHttpServiceRequestSpecMethodHttpHead): http.MethodHead,
	string(types.SessionManagerHttpServiceRequestSpecMethodHttpPut):  http.MethodPut,
}

func (l *Lab) issueTicket(spec types.BaseSessionManagerServiceRequestSpec) (types.SessionManagerGenericServiceTicket, error) {
	var none types.SessionManagerGenericServiceTicket
	hs, ok := spec.(*types.SessionManagerHttpServiceRequestSpec)
	if !ok {
		return none, errors.New("lab: only HTTP service tickets are issued")
	}
	method, ok := ticketMethods[hs.Method]
	if !ok {
		return none, fmt.Errorf("lab: tickets for %q are not issued", hs.Method)
	}
	u, err := url.Parse(hs.Url)
	if err != nil {
		return none, fmt.Errorf("lab: ticket URL: %w", err)
	}
	var h *host
	for _, c := range l.hosts {
		if c.ip == u.Hostname() || c.name == u.Hostname() {
			h = c
		}
	}
	if h == nil {
		return none, fmt.Errorf("lab: no host at %q", u.Hostname())
	}
	id := randomSecret()
	l.mu.Lock()
	now := time.Now()
	for k, t := range l.tickets {
		if now.After(t.expires) {
			delete(l.tickets, k)
		}
	}
	l.tickets[id] = ticket{host: h.ref.Value, path: u.Path, dsName: u.Query().Get("dsName"), method: method, expires: now.Add(ticketLifetime)}
	l.mu.Unlock()
	return types.SessionManagerGenericServiceTicket{Id: id, HostName: h.addr, SslThumbprint: h.thumbprint}, nil
}

// serveFolder is ESXi's /folder: a datastore file, for a ticket holder.
func (l *Lab) serveFolder(h *host, w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("vmware_cgi_ticket")
	if err != nil {
		http.Error(w, "no service ticket", http.StatusUnauthorized)
		return
	}
	l.mu.Lock()
	t, ok := l.tickets[c.Value]
	l.mu.Unlock()
	dsName := r.URL.Query().Get("dsName")
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet // a GET ticket allows HEAD too
	}
	switch {
	case !ok || time.Now().After(t.expires):
		http.Error(w, "unknown or expired service ticket", http.StatusUnauthorized)
		return
	case t.host != h.ref.Value:
		http.Error(w, "the service ticket is for another host", http.StatusForbidden)
		return
	case t.path != r.URL.Path || t.dsName != dsName || (t.method != method && t.method != r.Method):
		http.Error(w, "the service ticket is for another file or method", http.StatusForbidden)
		return
	case !h.datastores[dsName]:
		http.Error(w, "datastore not mounted on this host", http.StatusNotFound)
		return
	}
	rel, ok := strings.CutPrefix(r.URL.Path, "/folder/")
	if !ok || strings.Contains(rel, "..") {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	file := filepath.Join(l.datastores[dsName], filepath.FromSlash(path.Clean("/"+rel)))
	if r.Method == http.MethodPut {
		l.putFolder(w, r, file)
		return
	}
	f, err := os.Open(file)
	if err != nil {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.Error(w, "not a file", http.StatusNotFound)
		return
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}
