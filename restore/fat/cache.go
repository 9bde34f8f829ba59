package fat

import (
	"container/list"
	"sync"
)

// Cache bounds: FAT pages are 4 KiB each; directory listings count their
// entries, so that a few huge directories cannot hold much memory.
const (
	fatCachePages   = 64
	dirCacheEntries = 1 << 16
)

// lru is a least-recently-used cache whose capacity counts a cost per
// value. It is safe for concurrent use.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	used  int
	order *list.List // of *lruItem, most recent first
	items map[K]*list.Element
}

type lruItem[K comparable, V any] struct {
	key  K
	val  V
	cost int
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruItem[K, V]).val, true
}

// add keeps v unless its cost alone exceeds the capacity.
func (c *lru[K, V]) add(k K, v V, cost int) {
	if cost > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.used -= e.Value.(*lruItem[K, V]).cost
		c.order.Remove(e)
	}
	c.items[k] = c.order.PushFront(&lruItem[K, V]{key: k, val: v, cost: cost})
	c.used += cost
	for c.used > c.max {
		e := c.order.Back()
		it := e.Value.(*lruItem[K, V])
		c.order.Remove(e)
		delete(c.items, it.key)
		c.used -= it.cost
	}
}
