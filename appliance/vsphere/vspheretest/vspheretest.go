// Package vspheretest gives tests of VM backups what they start from: the
// lab, a client logged in to it, and an empty store.
package vspheretest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
)

// Password is the password of the rig's store.
var Password = []byte("vsphere test password")

// Rig is a running lab, a client connected to it with its thumbprint
// pinned, and a store; the test's cleanup closes them.
type Rig struct {
	Lab    *lab.Lab
	Client *vsphere.Client
	Store  *chunkstore.Store
	Log    *slog.Logger // warnings and errors, into the test's output
}

// New starts a rig. opts.Log, if nil, is the rig's log.
func New(t testing.TB, opts lab.Options) *Rig {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if opts.Log == nil {
		opts.Log = log
	}
	l, err := lab.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	u := l.URL()
	u.User = nil
	c, err := vsphere.Connect(ctx, vsphere.Config{URL: u.String(), Username: l.Username(), Password: l.Password(), Thumbprint: l.Thumbprint()}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	dir := t.TempDir()
	// The cheapest key derivation: the tests are about backups, not keys.
	if err := chunkstore.Init(ctx, backend.NewLocal(dir), chunkstore.InitOptions{Password: Password,
		KDF: crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}}); err != nil {
		t.Fatal(err)
	}
	s, err := chunkstore.Open(ctx, backend.NewLocal(dir), chunkstore.Options{Password: Password, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &Rig{Lab: l, Client: c, Store: s, Log: log}
}
