package fileapi

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prefix is where the API lives.
const Prefix = "/api/v1"

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
	// Code is one of bad_request, unauthorized, forbidden, not_found,
	// conflict, too_large, unsupported_media_type, rate_limited,
	// corrupt (a filesystem in a point is damaged), timeout, unavailable,
	// internal.
	Code string `json:"code"`
}

// StatusError is an error response.
type StatusError struct {
	Status int
	Body   Error
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Body.Code, e.Body.Error)
}

// A Client calls the file-level endpoints of one appliance with a bearer
// token, or through the HTTP client of a session.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// New returns a client of the appliance at base (https://host:port) that
// accepts only the certificate whose DER bytes hash, in SHA-256, to pin,
// and authenticates with token.
func New(base string, pin [32]byte, token string) *Client {
	tr := PinnedTransport(pin)
	tr.MaxIdleConnsPerHost = 8
	return NewVia(base, &http.Client{Transport: tr}, token)
}

// NewVia returns a client of the appliance at base that sends its requests
// with hc, and token if not empty: a session's cookies, if hc has them,
// serve otherwise, since every request here is a GET.
func NewVia(base string, hc *http.Client, token string) *Client {
	return &Client{base: strings.TrimSuffix(base, "/"), http: hc, token: token}
}

// PinnedTransport returns a transport that accepts only the certificate
// whose DER bytes hash, in SHA-256, to pin.
func PinnedTransport(pin [32]byte) *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{
			// The appliance's certificate is self-signed: it is checked
			// against the pin below instead of a CA.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || sha256.Sum256(raw[0]) != pin {
					return errors.New("the appliance's certificate is not the pinned one")
				}
				return nil
			},
		},
	}
}

// getJSON GETs path and decodes its JSON response into out.
func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.get(ctx, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSON+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if len(b) > maxJSON {
		return fmt.Errorf("GET %s: response larger than %d bytes", path, maxJSON)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("GET %s: decode the response: %w", path, err)
	}
	return nil
}

// maxJSON bounds a JSON response.
const maxJSON = 64 << 20

// VM is a VM that has points, as the appliance lists it.
type VM struct {
	Source Source `json:"source"`
	Points int    `json:"points"`
	Latest string `json:"latest"` // the newest point's ID
	// BIOSUUID is the VM's BIOS UUID (config.uuid) in its newest point.
	BIOSUUID string `json:"bios_uuid,omitempty"`
}

// Source identifies a VM in the appliance's store.
type Source struct {
	Name   string `json:"name"`
	VMUUID string `json:"vm_uuid,omitempty"`
	VMName string `json:"vm_name,omitempty"`
}

// Point is a restore point, as far as a file-level client needs it.
type Point struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Source      Source    `json:"source"`
	Consistency string    `json:"consistency,omitempty"`
	Disks       []struct {
		Index    int   `json:"index"`
		Capacity int64 `json:"capacity"`
	} `json:"disks"`
}

// VMs lists the VMs that have points; biosUUID, if not empty, keeps the
// one whose BIOS UUID it is, in either byte order.
func (c *Client) VMs(ctx context.Context, biosUUID string) ([]VM, error) {
	q := url.Values{}
	if biosUUID != "" {
		q.Set("bios_uuid", biosUUID)
	}
	var out []VM
	err := c.getJSON(ctx, withQuery(Prefix+"/vms", q), &out)
	return out, err
}

// Points lists the points of a VM (its source name, instance UUID or
// name; all if empty), newest first.
func (c *Client) Points(ctx context.Context, vm string) ([]Point, error) {
	q := url.Values{}
	if vm != "" {
		q.Set("vm", vm)
	}
	var out []Point
	err := c.getJSON(ctx, withQuery(Prefix+"/points", q), &out)
	return out, err
}

// Point shows a point, given its ID or a unique prefix of it.
func (c *Client) Point(ctx context.Context, id string) (Point, error) {
	var out Point
	err := c.getJSON(ctx, pointPath(id), &out)
	return out, err
}

// Volumes lists a point's volumes.
func (c *Client) Volumes(ctx context.Context, point string) ([]VolumeView, error) {
	var out []VolumeView
	err := c.getJSON(ctx, pointPath(point)+"/volumes", &out)
	return out, err
}

// Stat returns a file's metadata; follow says to follow a symlink at
// name itself.
func (c *Client) Stat(ctx context.Context, point, volume, name string, follow bool) (FileView, error) {
	q := url.Values{"path": {name}, "stat": {"true"}}
	if follow {
		q.Set("follow", "true")
	}
	var out Listing
	err := c.getJSON(ctx, withQuery(volumePath(point, volume, "files"), q), &out)
	return out.File, err
}

// List returns a file and, for a directory, the page of at most limit of
// its entries (0: the server's default) whose names sort after after;
// follow says to follow a symlink at name itself.
func (c *Client) List(ctx context.Context, point, volume, name, after string, limit int, follow bool) (Listing, error) {
	q := url.Values{"path": {name}}
	if follow {
		q.Set("follow", "true")
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out Listing
	err := c.getJSON(ctx, withQuery(volumePath(point, volume, "files"), q), &out)
	return out, err
}

// MaxPage is the most entries one listing page holds.
const MaxPage = 10000

// MaxListing bounds the entries ListAll gathers of one directory.
const MaxListing = 1_000_000

// ListAll returns a file and, for a directory, all its entries, page
// after page, and what was wrong with the directory.
func (c *Client) ListAll(ctx context.Context, point, volume, name string, follow bool) (FileView, []FileView, []string, error) {
	var entries []FileView
	var problems []string
	after := ""
	for {
		l, err := c.List(ctx, point, volume, name, after, MaxPage, follow)
		if err != nil {
			return FileView{}, nil, nil, err
		}
		entries = append(entries, l.Entries...)
		problems = append(problems, l.Errors...)
		if !l.More || len(l.Entries) == 0 {
			return l.File, entries, problems, nil
		}
		if len(entries) > MaxListing {
			return FileView{}, nil, nil, fmt.Errorf("directory %s has more than %d entries", name, MaxListing)
		}
		next := l.Entries[len(l.Entries)-1].Name
		if next <= after {
			return FileView{}, nil, nil, fmt.Errorf("listing of %s does not advance past %q", name, after)
		}
		after = next
	}
}

// ReadAt reads len(p) bytes of a file at off with a Range request; like
// io.ReaderAt, it returns io.EOF with fewer bytes at the file's end.
func (c *Client) ReadAt(ctx context.Context, point, volume, name string, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	h := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)}}
	resp, err := c.get(ctx, withQuery(volumePath(point, volume, "content"), url.Values{"path": {name}}), h)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status == http.StatusRequestedRangeNotSatisfiable {
			return 0, io.EOF
		}
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return 0, fmt.Errorf("read %s at %d: status %s, want 206", name, off, resp.Status)
	}
	start, end, _, err := contentRange(resp.Header.Get("Content-Range"))
	if err != nil || start != off || end < start || end-start+1 > int64(len(p)) {
		return 0, fmt.Errorf("read %s at %d: Content-Range %q does not answer the request", name, off, resp.Header.Get("Content-Range"))
	}
	want := int(end - start + 1)
	n, err := io.ReadFull(resp.Body, p[:want])
	if err != nil {
		return n, fmt.Errorf("read %s at %d: %w", name, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// contentRange parses "bytes first-last/size".
func contentRange(v string) (first, last, size int64, err error) {
	_, err = fmt.Sscanf(v, "bytes %d-%d/%d", &first, &last, &size)
	return first, last, size, err
}

// Content opens a whole file; the caller closes it.
func (c *Client) Content(ctx context.Context, point, volume, name string) (io.ReadCloser, error) {
	resp, err := c.get(ctx, withQuery(volumePath(point, volume, "content"), url.Values{"path": {name}}), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Archive opens a tar or zip stream of files and folders; the caller
// closes it. A stream cut short by the appliance ends in an error.
func (c *Client) Archive(ctx context.Context, point, volume string, paths []string, format string) (io.ReadCloser, error) {
	q := url.Values{"path": paths}
	if format != "" {
		q.Set("format", format)
	}
	resp, err := c.get(ctx, withQuery(volumePath(point, volume, "archive"), q), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Search finds files below root whose names match pattern.
func (c *Client) Search(ctx context.Context, point, volume, root, pattern string, limit int) (SearchResult, error) {
	q := url.Values{"pattern": {pattern}}
	if root != "" {
		q.Set("path", root)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out SearchResult
	err := c.getJSON(ctx, withQuery(volumePath(point, volume, "search"), q), &out)
	return out, err
}

// get sends a GET whose successful response the caller reads; an error
// response is a *StatusError.
func (c *Client) get(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		se := &StatusError{Status: resp.StatusCode}
		if json.Unmarshal(b, &se.Body) != nil {
			se.Body.Error = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("GET %s: %w", path, se)
	}
	return resp, nil
}

func pointPath(id string) string { return Prefix + "/points/" + url.PathEscape(id) }

func volumePath(point, volume, what string) string {
	return pointPath(point) + "/volumes/" + url.PathEscape(VolumeRef(volume)) + "/" + what
}

func withQuery(p string, q url.Values) string {
	if len(q) == 0 {
		return p
	}
	return p + "?" + q.Encode()
}
