package ntfs

import "testing"

func TestLRU(t *testing.T) {
	c := newLRU[int, string](3)
	c.add(1, "a", 1)
	c.add(2, "b", 1)
	c.add(3, "c", 1)
	c.get(1) // 2 is now the least recently used
	c.add(4, "d", 1)
	if _, ok := c.get(2); ok {
		t.Error("2 was not dropped")
	}
	for _, k := range []int{1, 3, 4} {
		if _, ok := c.get(k); !ok {
			t.Errorf("%d was dropped", k)
		}
	}
	c.add(3, "c2", 2) // replacing costs more: drops the oldest
	if v, _ := c.get(3); v != "c2" || c.cost > 3 {
		t.Errorf("got %q, cost %d", v, c.cost)
	}
	c.add(5, "too big", 4)
	if _, ok := c.get(5); ok {
		t.Error("an item costing more than the limit was cached")
	}
}
