package fstree_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
)

func TestCacheCost(t *testing.T) {
	c := fstree.NewCache[int, string](3, 0)
	c.Add(1, "a", 1)
	c.Add(2, "b", 1)
	c.Add(3, "c", 1)
	if _, ok := c.Get(1); !ok { // 2 is now the least recently used
		t.Fatal("1 missing")
	}
	c.Add(4, "d", 1)
	if _, ok := c.Get(2); ok {
		t.Error("2 kept past the bound")
	}
	for _, k := range []int{1, 3, 4} {
		if _, ok := c.Get(k); !ok {
			t.Errorf("%d evicted", k)
		}
	}
	c.Add(3, "c2", 2) // replacing costs more: evicts the least recent, 1
	if v, _ := c.Get(3); v != "c2" {
		t.Errorf("3 is %q, not the replacement", v)
	}
	if _, ok := c.Get(1); ok {
		t.Error("1 kept past the bound")
	}
	if n, cost := c.Len(); n != 2 || cost != 3 {
		t.Errorf("%d entries of cost %d, want 2 of 3", n, cost)
	}
	c.Add(5, "too big", 4)
	if _, ok := c.Get(5); ok {
		t.Error("a value costing more than the bound was kept")
	}
	if v, ok := c.Get(3); !ok || v != "c2" {
		t.Error("an oversized value evicted the others")
	}
}

func TestCacheEntries(t *testing.T) {
	c := fstree.NewCache[int, int](0, 2)
	c.Add(1, 1, 1<<40)
	c.Add(2, 2, 1<<40)
	c.Get(1)
	c.Add(3, 3, 0)
	if _, ok := c.Get(2); ok {
		t.Error("2 kept past the bound")
	}
	if n, _ := c.Len(); n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
}

func TestCacheBoth(t *testing.T) {
	c := fstree.NewCache[int, int](10, 3)
	for k := range 4 {
		c.Add(k, k, 1)
	}
	if n, cost := c.Len(); n != 3 || cost != 3 {
		t.Errorf("%d entries of cost %d, want 3 of 3", n, cost)
	}
	c.Add(9, 9, 9) // evicts the least recent until the cost fits
	if n, cost := c.Len(); n != 2 || cost != 10 {
		t.Errorf("%d entries of cost %d, want 2 of 10", n, cost)
	}
}

// TestCacheConcurrent is for the race detector, and checks that the
// bounds hold whatever the interleaving.
func TestCacheConcurrent(t *testing.T) {
	c := fstree.NewCache[string, []byte](64, 10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				k := fmt.Sprint((g + i) % 20)
				if v, ok := c.Get(k); ok && string(v) != k {
					t.Errorf("%s holds %q", k, v)
					return
				}
				c.Add(k, []byte(k), int64(1+i%8))
			}
		})
	}
	wg.Wait()
	if n, cost := c.Len(); n > 10 || cost > 64 {
		t.Errorf("%d entries of cost %d, past the bounds", n, cost)
	}
}
