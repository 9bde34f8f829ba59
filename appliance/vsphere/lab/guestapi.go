package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// guestServer serves the guest API: what happens inside the VMs.
type guestServer struct {
	url string
	srv *http.Server
}

func (g *guestServer) close() { _ = g.srv.Close() }

// maxGuestWrite bounds one write request.
const maxGuestWrite = 64 << 20

func (l *Lab) serveGuest() (*guestServer, error) {
	ln, err := net.Listen("tcp", l.opts.GuestListen)
	if err != nil {
		return nil, fmt.Errorf("lab: guest API: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /vms", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, l.VMs()) })
	mux.HandleFunc("GET /vms/{vm}/disks/{disk}", l.guestRead)
	mux.HandleFunc("PUT /vms/{vm}/disks/{disk}", l.guestWrite)
	mux.HandleFunc("POST /vms/{vm}/cbt/reset", func(w http.ResponseWriter, r *http.Request) {
		if err := l.ResetCBT(r.PathValue("vm")); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	g := &guestServer{url: "http://" + ln.Addr().String(),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

func (l *Lab) guestDisk(r *http.Request) (*Reader, error) {
	n, err := strconv.Atoi(r.PathValue("disk"))
	if err != nil {
		return nil, fmt.Errorf("disk %q: not a number: %w", r.PathValue("disk"), ErrNotFound)
	}
	return l.Disk(r.PathValue("vm"), n)
}

// guestRead serves a disk as the guest sees it now; Range requests work.
func (l *Lab) guestRead(w http.ResponseWriter, r *http.Request) {
	d, err := l.guestDisk(r)
	if err != nil {
		httpError(w, err)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(d, 0, d.Size()))
}

// guestWrite writes the request body into a disk at ?offset=N.
func (l *Lab) guestWrite(w http.ResponseWriter, r *http.Request) {
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || off < 0 {
		http.Error(w, "offset: a byte offset is required", http.StatusBadRequest)
		return
	}
	n, err := strconv.Atoi(r.PathValue("disk"))
	if err != nil {
		http.Error(w, "disk: not a number", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxGuestWrite))
	if err != nil {
		http.Error(w, fmt.Sprintf("body: at most %d bytes: %v", maxGuestWrite, err), http.StatusRequestEntityTooLarge)
		return
	}
	if err := l.Write(r.PathValue("vm"), n, off, body); err != nil {
		httpError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func httpError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	if errors.Is(err, ErrNotFound) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
