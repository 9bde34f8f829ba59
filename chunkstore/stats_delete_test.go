package chunkstore_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
)

// TestStatsDuringDelete deletes a point while Stats reads the manifests
// of the points it listed, as a job's retention does while the API serves
// /store/stats: Stats works its figures out again over the points left,
// instead of failing on the manifest that went away.
func TestStatsDuringDelete(t *testing.T) {
	dir := initStore(t, gcParams)
	s, hb := openHooked(t, dir)
	ctx := context.Background()
	a := mustPut(t, s, "a", []uint64{1, 2, 3}, nil, nil)
	b := mustPut(t, s, "b", []uint64{4, 5, 6}, nil, nil)

	// The first manifest Stats loads is a's, or b's: the other point is
	// deleted just then.
	var once sync.Once
	before := func(_ context.Context, h backend.Handle, _ int) {
		if h.Kind != backend.Points {
			return
		}
		once.Do(func() {
			victim := b
			if h.Name == b.ID.String() {
				victim = a
			}
			if err := s.DeletePoint(ctx, victim.ID); err != nil {
				t.Errorf("delete %s: %v", victim.ID.Short(), err)
			}
		})
	}
	hb.before.Store(&before)
	st, err := s.Stats(ctx)
	hb.before.Store(nil)
	if err != nil {
		t.Fatalf("stats while a point is deleted: %v", err)
	}
	if st.Points != 1 || len(st.PointsSpace) != 1 {
		t.Fatalf("stats of %d points (%d in points_space), want 1", st.Points, len(st.PointsSpace))
	}
}

// slowRemoveBackend is a local backend whose removal of a point's manifest
// can be held, once the file is gone, before it returns.
type slowRemoveBackend struct {
	*backend.Local
	removed chan struct{} // closed when a held removal has removed its file
	release chan struct{} // lets it return
}

func (b *slowRemoveBackend) Remove(ctx context.Context, h backend.Handle) error {
	err := b.Local.Remove(ctx, h)
	if h.Kind == backend.Points {
		close(b.removed)
		<-b.release
	}
	return err
}

// TestStatsDuringSlowDelete runs Stats while a deletion has removed a
// point's manifest but not yet its catalogue entry, as a deletion waiting
// on a busy disk to sync the directory does: Stats waits for the entry to
// go, and works its figures out over the point left.
func TestStatsDuringSlowDelete(t *testing.T) {
	dir := initStore(t, gcParams)
	rb := &slowRemoveBackend{Local: backend.NewLocal(dir), removed: make(chan struct{}), release: make(chan struct{})}
	ctx := context.Background()
	s, err := chunkstore.Open(ctx, rb, chunkstore.Options{Password: testPassword, IndexDir: filepath.Join(dir, "index")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	mustPut(t, s, "a", []uint64{1, 2, 3}, nil, nil)
	b := mustPut(t, s, "b", []uint64{4, 5, 6}, nil, nil)

	deleted := make(chan error, 1)
	go func() { deleted <- s.DeletePoint(ctx, b.ID) }()
	<-rb.removed
	time.AfterFunc(300*time.Millisecond, func() { close(rb.release) })
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatalf("stats while a point is deleted: %v", err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if st.Points != 1 {
		t.Fatalf("stats of %d points, want 1", st.Points)
	}
}
