package events

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// DefaultKeepalive is how often ServeSSE writes a comment to an idle
// stream when it is given no positive interval: often enough that proxies
// and load balancers, which commonly drop connections idle for 30 to 60
// seconds, keep it open.
const DefaultKeepalive = 15 * time.Second

// ServeSSE streams the events that pass filter (nil passes all) to an HTTP
// client as text/event-stream, until the request's context ends or the Hub
// closes.
//
// A client that sends the Last-Event-ID header, as browsers' EventSource
// does when it reconnects, or the after query parameter, resumes after
// that ID as Subscribe describes; one that sends neither gets only events
// published from now on, having presumably just loaded the current state.
// Every keepalive (DefaultKeepalive if <= 0) without an event, a comment
// line keeps the connection from looking idle.
//
// A client that falls behind gets the TypeLagged event, which has no id
// line so that its last event ID stays put, and the stream ends; its
// reconnection then resumes from the history.
func (h *Hub) ServeSSE(w http.ResponseWriter, r *http.Request, filter func(Event) bool, keepalive time.Duration) {
	if keepalive <= 0 {
		keepalive = DefaultKeepalive
	}
	after, liveOnly, err := resumePoint(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // unsubscribes
	events := h.subscribe(ctx, after, liveOnly, filter)

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	// nginx buffers responses unless told not to, which would hold events
	// back until its buffer fills.
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Flushing the headers at once lets the client know the stream is
	// open before the first event, which may be long in coming.
	if err := rc.Flush(); err != nil {
		return
	}

	bw := bufio.NewWriter(w)
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			writeEvent(bw, ev)
			tick.Reset(keepalive)
		case <-tick.C:
			bw.WriteString(": keepalive\n\n")
		}
		if bw.Flush() != nil || rc.Flush() != nil {
			return // the client has gone
		}
	}
}

// resumePoint reads where a client wants to resume from: the Last-Event-ID
// header, which a reconnecting EventSource sends, wins over the after
// query parameter.
func resumePoint(r *http.Request) (after uint64, liveOnly bool, err error) {
	s := r.Header.Get("Last-Event-ID")
	if s == "" {
		s = r.URL.Query().Get("after")
	}
	if s == "" {
		return 0, true, nil
	}
	after, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("event ID %q is not a number", s)
	}
	return after, false, nil
}

// writeEvent writes ev in the event-stream format. Its Data is JSON from
// json.Marshal, which never contains a newline, so one data line holds it.
func writeEvent(bw *bufio.Writer, ev Event) {
	if ev.ID != 0 {
		bw.WriteString("id: ")
		bw.WriteString(strconv.FormatUint(ev.ID, 10))
		bw.WriteByte('\n')
	}
	bw.WriteString("event: ")
	bw.WriteString(ev.Type)
	bw.WriteString("\ndata: ")
	bw.Write(ev.Data)
	bw.WriteString("\n\n")
}
