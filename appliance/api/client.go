package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
)

// A Client calls the API of one appliance, whose certificate it pins. It
// logs in with a session (Login) or sends a bearer token (Token). The
// demo, the in-guest client and the tests use it.
type Client struct {
	base  string
	http  *http.Client
	token string
	csrf  string
}

// NewClient returns a client of the appliance at base (https://host:port)
// that accepts only the certificate whose DER bytes hash, in SHA-256, to
// pin.
func NewClient(base string, pin [32]byte) *Client {
	tr := PinnedTransport(pin)
	tr.MaxIdleConnsPerHost = 16
	return NewClientVia(base, tr)
}

// NewClientVia returns a client of the appliance at base that sends its
// requests through rt, which clients may share.
func NewClientVia(base string, rt http.RoundTripper) *Client {
	jar, _ := cookiejar.New(nil) // never fails without options
	return &Client{base: strings.TrimSuffix(base, "/"), http: &http.Client{Transport: rt, Jar: jar}}
}

// PinnedTransport returns a transport that accepts only the certificate
// whose DER bytes hash, in SHA-256, to pin.
func PinnedTransport(pin [32]byte) *http.Transport {
	tr := fileapi.PinnedTransport(pin)
	tr.Proxy = nil // the appliance and its tests talk directly
	return tr
}

// WithToken returns a copy of c that authenticates with an API token.
func (c *Client) WithToken(secret string) *Client {
	cc := *c
	cc.token, cc.csrf = secret, ""
	cc.http = &http.Client{Transport: c.http.Transport}
	return &cc
}

// Login starts a session.
func (c *Client) Login(ctx context.Context, user, password string) (SessionInfo, error) {
	var s SessionInfo
	if err := c.Do(ctx, http.MethodPost, Prefix+"/sessions", LoginRequest{Username: user, Password: password}, &s); err != nil {
		return SessionInfo{}, err
	}
	c.csrf = s.CSRFToken
	return s, nil
}

// StatusError is an error response.
type StatusError = fileapi.StatusError

// Files returns a client of the file-level endpoints that shares c's
// connections and credentials.
func (c *Client) Files() *fileapi.Client { return fileapi.NewVia(c.base, c.http, c.token) }

// Do sends a request with in as its JSON body (none if nil) and decodes the
// response into out (ignored if nil). Error responses are *StatusError.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		se := &StatusError{Status: resp.StatusCode}
		if json.Unmarshal(b, &se.Body) != nil {
			se.Body.Error = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("%s %s: %w", method, path, se)
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode the response: %w", method, path, err)
	}
	return nil
}

// Stream opens a streaming GET, such as the event stream; the caller closes
// the body.
func (c *Client) Stream(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return resp, nil
}

func (c *Client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else if c.csrf != "" {
		req.Header.Set(CSRFHeader, c.csrf)
	}
}
