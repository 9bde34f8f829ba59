package ntfs

import (
	"container/list"
	"sync"
)

// lru is a cache of values, each with a cost, that drops the least
// recently used ones when their total cost passes a bound. It is safe for
// concurrent use.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	limit int
	cost  int
	order *list.List // of *lruItem, most recent first
	items map[K]*list.Element
}

type lruItem[K comparable, V any] struct {
	key   K
	value V
	cost  int
}

func newLRU[K comparable, V any](limit int) *lru[K, V] {
	return &lru[K, V]{limit: limit, order: list.New(), items: map[K]*list.Element{}}
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
	return e.Value.(*lruItem[K, V]).value, true
}

// add caches v under k, unless its cost alone passes the bound.
func (c *lru[K, V]) add(k K, v V, cost int) {
	if cost > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.cost -= e.Value.(*lruItem[K, V]).cost
		c.order.Remove(e)
	}
	c.items[k] = c.order.PushFront(&lruItem[K, V]{k, v, cost})
	c.cost += cost
	for c.cost > c.limit {
		e := c.order.Back()
		it := e.Value.(*lruItem[K, V])
		c.order.Remove(e)
		delete(c.items, it.key)
		c.cost -= it.cost
	}
}
