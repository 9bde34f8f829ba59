package events

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// record is one event, or one comment, as read from an event stream.
type record struct {
	id, event, data string
	hasID           bool
	comment         string
}

type stream struct {
	resp *http.Response
	sc   *bufio.Scanner
}

// connect opens the stream at url, sending lastID as Last-Event-ID unless
// it is empty.
func connect(t *testing.T, url, lastID string) *stream {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return &stream{resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next reads the next record, reporting false at the end of the stream.
func (s *stream) next(t *testing.T) (record, bool) {
	t.Helper()
	var r record
	started := false
	for s.sc.Scan() {
		line := s.sc.Text()
		if line == "" {
			if started {
				return r, true
			}
			continue
		}
		started = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			r.comment = value
		case "id":
			r.id, r.hasID = value, true
		case "event":
			r.event = value
		case "data":
			r.data += value
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	if err := s.sc.Err(); err != nil {
		t.Fatal(err)
	}
	if started {
		t.Fatalf("stream ended inside a record: %+v", r)
	}
	return r, false
}

// nextEvent skips comments.
func (s *stream) nextEvent(t *testing.T) record {
	t.Helper()
	for {
		r, ok := s.next(t)
		if !ok {
			t.Fatal("stream ended")
		}
		if r.comment == "" {
			return r
		}
	}
}

func sseServer(t *testing.T, h *Hub, filter func(Event) bool, keepalive time.Duration) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeSSE(w, r, filter, keepalive)
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(h.Close) // ends the streams, which ts.Close waits for
	return ts
}

func TestServeSSE(t *testing.T) {
	h := NewHub(0)
	h.Publish("task", "before") // a new client does not see it
	ts := sseServer(t, h, nil, time.Hour)

	s := connect(t, ts.URL, "")
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-store",
		"X-Accel-Buffering": "no",
	} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	h.Publish("task", map[string]string{"id": "t-1"})
	h.Publish("job-run", 42)
	h.Publish("vm-backup", "vm-7")
	want := []record{
		{id: "2", hasID: true, event: "task", data: `{"id":"t-1"}`},
		{id: "3", hasID: true, event: "job-run", data: `42`},
		{id: "4", hasID: true, event: "vm-backup", data: `"vm-7"`},
	}
	for _, w := range want {
		if got := s.nextEvent(t); got != w {
			t.Fatalf("got %+v, want %+v", got, w)
		}
	}
	s.resp.Body.Close()

	// A reconnecting client gets only what it has not seen.
	s = connect(t, ts.URL, "3")
	h.Publish("task", "after")
	for _, w := range []record{want[2], {id: "5", hasID: true, event: "task", data: `"after"`}} {
		if got := s.nextEvent(t); got != w {
			t.Fatalf("after reconnecting got %+v, want %+v", got, w)
		}
	}

	// The query parameter does the same; after=0 is the whole history.
	s = connect(t, ts.URL+"?after=0", "")
	if got := s.nextEvent(t); got.id != "1" || got.data != `"before"` {
		t.Fatalf("with after=0 got %+v first", got)
	}

	// Closing the hub ends every stream.
	h.Close()
	for {
		if _, ok := s.next(t); !ok {
			break
		}
	}
}

func TestServeSSELagged(t *testing.T) {
	h := NewHub(2)
	for range 5 {
		h.Publish("x", nil)
	}
	ts := sseServer(t, h, nil, time.Hour)
	s := connect(t, ts.URL, "1")
	if got := s.nextEvent(t); got.event != TypeLagged || got.hasID {
		t.Fatalf("got %+v, want a lagged event without an id", got)
	}
	if got := s.nextEvent(t); got.id != "4" {
		t.Fatalf("got %+v, want the oldest event held, 4", got)
	}
}

func TestServeSSEFilterAndKeepalive(t *testing.T) {
	h := NewHub(0)
	ts := sseServer(t, h, func(ev Event) bool { return ev.Type == "task" }, time.Millisecond)
	s := connect(t, ts.URL, "")
	for {
		r, ok := s.next(t)
		if !ok {
			t.Fatal("stream ended")
		}
		if r.comment == "keepalive" {
			break
		}
		t.Fatalf("got %+v before any event was published", r)
	}
	h.Publish("job-run", nil)
	h.Publish("task", nil)
	if got := s.nextEvent(t); got.id != "2" || got.event != "task" {
		t.Fatalf("got %+v, want task 2", got)
	}
}

func TestServeSSEBadID(t *testing.T) {
	h := NewHub(0)
	ts := sseServer(t, h, nil, time.Hour)
	for _, q := range []string{"?after=x", "?after=-1"} {
		resp, err := http.Get(ts.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", q, resp.Status)
		}
	}
}

// TestServeSSEClientGone checks that a client that goes away stops being
// a subscriber.
func TestServeSSEClientGone(t *testing.T) {
	h := NewHub(0)
	ts := sseServer(t, h, nil, time.Hour)
	s := connect(t, ts.URL, "")
	h.Publish("x", nil)
	s.nextEvent(t)
	s.resp.Body.Close()
	// The handler notices on its next write, or when the server sees the
	// connection close; publish until it has.
	for {
		h.Publish("x", nil)
		h.mu.Lock()
		n := len(h.subs)
		h.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
}
