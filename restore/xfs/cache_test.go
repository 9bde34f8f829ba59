package xfs

import "testing"

func TestLRU(t *testing.T) {
	c := newLRU[int, string](3)
	c.put(1, "a", 1)
	c.put(2, "b", 1)
	c.put(3, "c", 1)
	if _, ok := c.get(1); !ok { // 1 is now the most recent
		t.Fatal("1 missing")
	}
	c.put(4, "d", 1) // evicts 2, the least recent
	if _, ok := c.get(2); ok {
		t.Error("2 kept past the budget")
	}
	for _, k := range []int{1, 3, 4} {
		if _, ok := c.get(k); !ok {
			t.Errorf("%d evicted", k)
		}
	}
	c.put(5, "big", 4) // larger than the whole budget: not kept
	if _, ok := c.get(5); ok || c.used != 3 {
		t.Errorf("oversized value kept, %d used", c.used)
	}
}
