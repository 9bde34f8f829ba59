package index

import (
	"log/slog"
	"testing"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

func TestPacksSurviveReopenAndForget(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	x, err := Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(i int) pack.Entry {
		return pack.Entry{Type: blob.Data, ID: synthID(i), Offset: uint32(5 + 100*i), Length: 100, RawLength: 1000, Compressed: i%2 == 0}
	}
	p1, p2 := synthID(-1), synthID(-2)
	if err := x.AddPack(p1, 1000, []pack.Entry{entry(1), entry(2)}); err != nil {
		t.Fatal(err)
	}
	if err := x.AddPack(p2, 2000, []pack.Entry{entry(3)}); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}

	x, err = Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for i, want := range map[int]blob.ID{1: p1, 2: p1, 3: p2} {
		loc, found, err := x.Lookup(synthID(i))
		if err != nil || !found {
			t.Fatalf("blob %d after reopen: found %v, %v", i, found, err)
		}
		if loc.Pack != want || loc.Entry != entry(i) {
			t.Errorf("blob %d: %+v, want pack %s entry %+v", i, loc, want.Short(), entry(i))
		}
	}
	// A pack added after reopening must not reuse a number.
	p3 := synthID(-3)
	if err := x.AddPack(p3, 3000, []pack.Entry{entry(4)}); err != nil {
		t.Fatal(err)
	}
	if loc, _, _ := x.Lookup(synthID(1)); loc.Pack != p1 {
		t.Errorf("blob 1 moved to pack %s after a new pack was added", loc.Pack.Short())
	}
	if err := x.ForgetPacks(map[blob.ID]bool{p1: true}); err != nil {
		t.Fatal(err)
	}
	for i, gone := range map[int]bool{1: true, 2: true, 3: false, 4: false} {
		if _, found, _ := x.Lookup(synthID(i)); found == gone {
			t.Errorf("blob %d: found %v after forgetting pack 1", i, found)
		}
	}
	var packs []blob.ID
	if err := x.Packs(func(p PackInfo) error { packs = append(packs, p.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(packs) != 2 {
		t.Errorf("%d packs indexed after forgetting one of three", len(packs))
	}
	if _, found, _ := x.Lookup(synthID(99)); found {
		t.Error("an unknown blob was found")
	}
}
