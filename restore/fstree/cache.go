package fstree

import (
	"container/list"
	"sync"
)

// Cache keeps the values a reader has parsed from its volume, so that
// walking a tree does not read the same metadata again and again, while
// a hostile image cannot make it hold more than its bounds. When either
// bound is passed, the least recently used values go. It is safe for
// concurrent use.
//
// Two goroutines that miss the same key both load its value and both add
// it; the values a reader caches are immutable, so that costs a read, not
// correctness.
type Cache[K comparable, V any] struct {
	maxCost    int64
	maxEntries int

	mu    sync.Mutex
	cost  int64
	order list.List // of *cacheItem[K, V], most recent first
	items map[K]*list.Element
}

type cacheItem[K comparable, V any] struct {
	key   K
	value V
	cost  int64
}

// NewCache returns a cache that holds values of a total cost of at most
// maxCost, in a unit the caller chooses (bytes, most often), and at most
// maxEntries of them. A bound of zero or less is no bound.
func NewCache[K comparable, V any](maxCost int64, maxEntries int) *Cache[K, V] {
	return &Cache[K, V]{maxCost: maxCost, maxEntries: maxEntries, items: make(map[K]*list.Element)}
}

// Get returns the value cached under k, if there is one.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheItem[K, V]).value, true
}

// Add caches v under k in place of any value there, unless its cost alone
// passes the bound: keeping it would evict everything else.
func (c *Cache[K, V]) Add(k K, v V, cost int64) {
	if c.maxCost > 0 && cost > c.maxCost {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.cost -= e.Value.(*cacheItem[K, V]).cost
		c.order.Remove(e)
	}
	c.items[k] = c.order.PushFront(&cacheItem[K, V]{key: k, value: v, cost: cost})
	c.cost += cost
	for c.maxCost > 0 && c.cost > c.maxCost || c.maxEntries > 0 && c.order.Len() > c.maxEntries {
		it := c.order.Remove(c.order.Back()).(*cacheItem[K, V])
		delete(c.items, it.key)
		c.cost -= it.cost
	}
}

// Len returns the number of values cached and their total cost.
func (c *Cache[K, V]) Len() (entries int, cost int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.cost
}
