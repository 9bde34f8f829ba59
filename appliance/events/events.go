// Package events fans out the appliance's live events (task progress, job
// runs, VM backups) to subscribers, chiefly browsers following them as
// server-sent events.
//
// A Hub keeps a bounded history so that a client that reconnects with the
// ID of the last event it saw misses nothing, and it never lets a slow
// subscriber hold up the code that publishes: such a subscriber is cut off
// and told so, and reconnects.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// TypeLagged is the type of the synthetic event that tells a subscriber it
// has missed events: either its starting point is older than the history
// holds, or it read too slowly and is being disconnected. Its ID is 0. A
// client that sees it should reload whatever state it shows.
const TypeLagged = "lagged"

const (
	// DefaultHistory is how many events a Hub keeps for replay when
	// NewHub is given no positive size.
	DefaultHistory = 1024

	// subscriberBuffer is how many live events a subscriber may have
	// unread before it is disconnected.
	subscriberBuffer = 256
)

// Event is one thing that happened, as subscribers see it.
type Event struct {
	ID   uint64          `json:"id"` // increasing from 1, assigned by Publish
	Time time.Time       `json:"time"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// Hub publishes events to subscribers. It is safe for concurrent use.
type Hub struct {
	mu      sync.Mutex
	last    uint64  // ID of the last event published
	history []Event // ring of the last len(history) events
	next    int     // index in history of the next event to write
	held    int     // how many entries of history are filled
	subs    map[*subscriber]struct{}
	closed  bool
}

type subscriber struct {
	ch     chan Event
	filter func(Event) bool
	stop   func() bool // stops the context.AfterFunc that unsubscribes
}

// NewHub returns a Hub that keeps the last history events for replay, or
// DefaultHistory if history <= 0.
func NewHub(history int) *Hub {
	if history <= 0 {
		history = DefaultHistory
	}
	return &Hub{
		history: make([]Event, history),
		subs:    make(map[*subscriber]struct{}),
	}
}

// Publish assigns the next ID to an event of type typ carrying data
// marshalled as JSON, and hands it to every subscriber whose filter
// accepts it. It never waits for a subscriber. If data cannot be
// marshalled the event still goes out, with an object whose "error" member
// says why, so that subscribers learn that something happened.
func (h *Hub) Publish(typ string, data any) Event {
	raw, err := json.Marshal(data)
	if err != nil {
		raw, _ = json.Marshal(map[string]string{"error": fmt.Sprintf("marshal %s event: %v", typ, err)})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last++
	ev := Event{ID: h.last, Time: time.Now(), Type: typ, Data: raw}
	h.history[h.next] = ev
	h.next = (h.next + 1) % len(h.history)
	h.held = min(h.held+1, len(h.history))
	for s := range h.subs {
		if s.filter != nil && !s.filter(ev) {
			continue
		}
		// The last slot of the buffer is kept for the lagged event, so
		// that a subscriber cut off is always told why.
		if len(s.ch) < cap(s.ch)-1 {
			s.ch <- ev
			continue
		}
		s.ch <- lagged()
		h.drop(s)
	}
	return ev
}

// Subscribe returns a channel of the events with IDs greater than after
// that pass filter (nil passes all): first those still in the history,
// then live ones as they are published. If events after after have already
// left the history, or after is from a Hub of an earlier process (greater
// than any ID published), the channel starts with a TypeLagged event and
// the whole history follows it.
//
// filter runs with the Hub locked, for every event published, so it must
// be quick and must not use the Hub.
//
// The channel is buffered for 256 live events beyond the replay. A
// subscriber that lets it fill is disconnected: it gets a final TypeLagged
// event and the channel is closed. The channel is also closed when ctx
// ends or the Hub is closed, so receivers should read until it closes.
func (h *Hub) Subscribe(ctx context.Context, after uint64, filter func(Event) bool) <-chan Event {
	return h.subscribe(ctx, after, false, filter)
}

// subscribe is Subscribe; liveOnly skips the replay, for clients with no
// event ID to resume from.
func (h *Hub) subscribe(ctx context.Context, after uint64, liveOnly bool, filter func(Event) bool) <-chan Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		ch := make(chan Event)
		close(ch)
		return ch
	}
	var replay []Event
	if !liveOnly {
		oldest := h.last - uint64(h.held) + 1 // the ID of history's oldest event
		if after > h.last || after+1 < oldest {
			replay = append(replay, lagged())
			after = 0
		}
		for i := range h.held {
			ev := h.history[(h.next-h.held+i+len(h.history))%len(h.history)]
			if ev.ID > after && (filter == nil || filter(ev)) {
				replay = append(replay, ev)
			}
		}
	}
	s := &subscriber{ch: make(chan Event, len(replay)+subscriberBuffer), filter: filter}
	for _, ev := range replay {
		s.ch <- ev
	}
	h.subs[s] = struct{}{}
	s.stop = context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[s]; ok {
			h.drop(s)
		}
	})
	return s.ch
}

// drop removes s and closes its channel. h.mu must be held.
func (h *Hub) drop(s *subscriber) {
	delete(h.subs, s)
	close(s.ch)
	// stop is nil only while subscribe still holds the lock.
	if s.stop != nil {
		s.stop()
	}
}

// Close closes every subscriber's channel. Later subscribers get a closed
// channel; Publish still records events, for no one.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.drop(s)
	}
}

func lagged() Event {
	return Event{Time: time.Now(), Type: TypeLagged, Data: json.RawMessage("null")}
}
