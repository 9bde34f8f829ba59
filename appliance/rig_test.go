package appliance_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/bulwarkbackup/bulwark/appliance"
	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/config"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
)

// adminPassword is the rig's first admin's password.
const adminPassword = "correct horse battery staple"

// An applianceRig is an appliance served on loopback over a store and state
// in a temporary directory, optionally with the lab as its vCenter. It can
// be stopped and started again on the same directory, as an appliance is
// restarted.
type applianceRig struct {
	t   testing.TB
	dir string
	lab *lab.Lab
	cfg *config.Config

	ap     *appliance.Appliance
	cancel context.CancelFunc
	served chan error
}

// newApplianceRig starts an appliance; labOpts, if not nil, starts the lab
// too and configures it as vCenter "lab".
func newApplianceRig(t testing.TB, labOpts *lab.Options) *applianceRig {
	t.Helper()
	return startApplianceRig(t, rigOptions{Lab: labOpts})
}

// rigOptions shape an applianceRig.
type rigOptions struct {
	// Lab, if not nil, starts the lab.
	Lab *lab.Options
	// LabNotConfigured leaves the lab out of the configuration file: the
	// test adds it through the API (see labVCenter).
	LabNotConfigured bool
}

// startApplianceRig starts an appliance as o says.
func startApplianceRig(t testing.TB, o rigOptions) *applianceRig {
	t.Helper()
	r := &applianceRig{t: t, dir: t.TempDir()}
	vcenters := ""
	if labOpts := o.Lab; labOpts != nil {
		if labOpts.Log == nil {
			labOpts.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
		l, err := lab.Start(context.Background(), *labOpts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		r.lab = l
		if err := os.WriteFile(filepath.Join(r.dir, "vcenter.pass"), []byte(l.Password()), 0o600); err != nil {
			t.Fatal(err)
		}
		u := l.URL()
		u.User = nil
		if !o.LabNotConfigured {
			vcenters = fmt.Sprintf("vcenters:\n  - name: lab\n    url: %q\n    username: %q\n    password_file: vcenter.pass\n    thumbprint: %q\n",
				u.String(), l.Username(), l.Thumbprint())
		}
	}
	if err := os.WriteFile(filepath.Join(r.dir, "store.pass"), []byte("store password for tests"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "listen: 127.0.0.1:0\nstore:\n  path: store\n  password_file: store.pass\nstate: state\nlog:\n  level: warn\n" + vcenters
	cfg, err := config.Parse([]byte(yaml), r.dir)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg = cfg
	r.start()
	t.Cleanup(r.stop)
	return r
}

// start opens the appliance and serves it.
func (r *applianceRig) start() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ap, err := appliance.Open(ctx, appliance.Options{
		Config: r.cfg, AdminPassword: adminPassword, Version: "test",
		Log: slog.New(slog.NewTextHandler(r.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		cancel()
		r.t.Fatal(err)
	}
	r.ap, r.cancel, r.served = ap, cancel, make(chan error, 1)
	go func() { r.served <- ap.Serve(ctx) }()
	// Keep the port across restarts, so that clients keep working.
	r.cfg.Listen = ap.Addr().String()
}

// stop shuts the appliance down as SIGTERM does, and waits for it.
func (r *applianceRig) stop() {
	r.t.Helper()
	if r.ap == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.served:
		if err != nil {
			r.t.Errorf("appliance stopped with %v", err)
		}
	case <-time.After(2 * time.Minute):
		r.t.Fatal("the appliance did not stop within 2 minutes")
	}
	r.ap = nil
}

func (r *applianceRig) restart() {
	r.t.Helper()
	r.stop()
	r.start()
}

// client returns a client of the appliance, not logged in.
func (r *applianceRig) client() *api.Client {
	return api.NewClient(r.ap.URL(), sha256.Sum256(r.ap.Certificate().Certificate[0]))
}

// admin returns a client logged in as the first admin.
func (r *applianceRig) admin() *api.Client {
	r.t.Helper()
	c := r.client()
	if _, err := c.Login(context.Background(), r.cfg.AdminUser, adminPassword); err != nil {
		r.t.Fatal(err)
	}
	return c
}

// labVCenter is the request that adds the lab as vCenter name, pinning its
// certificate by its SHA-1 thumbprint as vSphere shows it.
func (r *applianceRig) labVCenter(name string) api.NewVCenter {
	r.t.Helper()
	if r.lab == nil {
		r.t.Fatal("the rig has no lab")
	}
	u := r.lab.URL()
	u.User = nil
	return api.NewVCenter{Name: name, URL: u.String(), Username: r.lab.Username(), Password: r.lab.Password(),
		Thumbprint: r.lab.Thumbprint()}
}

// openAPI fetches, with c, and loads the appliance's OpenAPI document.
func (r *applianceRig) openAPI(c *api.Client) *openapi3.T {
	r.t.Helper()
	resp, err := c.Stream(context.Background(), api.Prefix+"/openapi.json", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		r.t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		r.t.Fatalf("load the OpenAPI document: %v", err)
	}
	return doc
}
