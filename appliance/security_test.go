package appliance_test

// Security and abuse tests of the appliance's HTTPS API: each tries
// something that must fail, over the real API of a real appliance, and
// checks the exact status and that nothing changed.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/bulwarkbackup/bulwark/appliance/api"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// secAccess is who may call a route, as these tests expect it. The policy
// is written down here independently of routes.go: a route whose access
// changes, or a new route, fails TestSecurityRoles until it is classified.
type secAccess int

const (
	accPublic   secAccess = iota // anybody
	accAnyone                    // any principal, file-restore tokens included
	accOperator                  // operators and admins
	accAdmin                     // admins only
)

var secPolicy = map[string]secAccess{
	"GET /healthz":                                     accPublic,
	"POST /api/v1/sessions":                            accPublic,
	"GET /metrics":                                     accOperator,
	"GET /api/v1/openapi.json":                         accAnyone,
	"GET /api/v1/session":                              accAnyone,
	"DELETE /api/v1/session":                           accAnyone,
	"PUT /api/v1/session/password":                     accAnyone,
	"GET /api/v1/users":                                accAdmin,
	"POST /api/v1/users":                               accAdmin,
	"GET /api/v1/users/{name}":                         accAdmin,
	"PATCH /api/v1/users/{name}":                       accAdmin,
	"DELETE /api/v1/users/{name}":                      accAdmin,
	"GET /api/v1/tokens":                               accOperator,
	"POST /api/v1/tokens":                              accOperator,
	"DELETE /api/v1/tokens/{id}":                       accOperator,
	"GET /api/v1/vcenters":                             accOperator,
	"POST /api/v1/vcenters":                            accAdmin,
	"GET /api/v1/vcenters/{name}":                      accOperator,
	"DELETE /api/v1/vcenters/{name}":                   accAdmin,
	"POST /api/v1/vcenters/{name}/test":                accAdmin,
	"GET /api/v1/vcenters/{name}/inventory":            accOperator,
	"GET /api/v1/jobs":                                 accOperator,
	"POST /api/v1/jobs":                                accAdmin,
	"GET /api/v1/jobs/{name}":                          accOperator,
	"PUT /api/v1/jobs/{name}":                          accAdmin,
	"DELETE /api/v1/jobs/{name}":                       accAdmin,
	"POST /api/v1/jobs/{name}/enable":                  accAdmin,
	"POST /api/v1/jobs/{name}/disable":                 accAdmin,
	"POST /api/v1/jobs/{name}/run":                     accOperator,
	"POST /api/v1/jobs/{name}/cancel":                  accOperator,
	"GET /api/v1/jobs/{name}/runs":                     accOperator,
	"GET /api/v1/runs/{id}":                            accOperator,
	"GET /api/v1/vms":                                  accAnyone,
	"GET /api/v1/points":                               accAnyone,
	"GET /api/v1/points/{id}":                          accAnyone,
	"POST /api/v1/points/{id}/pin":                     accOperator,
	"DELETE /api/v1/points/{id}/pin":                   accOperator,
	"DELETE /api/v1/points/{id}":                       accAdmin,
	"POST /api/v1/points/{id}/restore":                 accOperator,
	"POST /api/v1/points/{id}/restore-disk":            accOperator,
	"POST /api/v1/points/{id}/rehearse":                accOperator,
	"GET /api/v1/points/{id}/volumes":                  accAnyone,
	"GET /api/v1/points/{id}/volumes/{volume}/files":   accAnyone,
	"GET /api/v1/points/{id}/volumes/{volume}/content": accAnyone,
	"GET /api/v1/points/{id}/volumes/{volume}/archive": accAnyone,
	"GET /api/v1/points/{id}/volumes/{volume}/search":  accAnyone,
	"GET /api/v1/store/stats":                          accOperator,
	"POST /api/v1/store/check":                         accOperator,
	"POST /api/v1/store/gc":                            accOperator,
	"POST /api/v1/store/prune":                         accOperator,
	"GET /api/v1/tasks":                                accOperator,
	"GET /api/v1/tasks/{id}":                           accOperator,
	"POST /api/v1/tasks/{id}/cancel":                   accOperator,
	"GET /api/v1/events":                               accOperator,
	"GET /api/v1/audit":                                accAdmin,
}

// The passwords of the users these tests create.
const (
	secOperatorPassword = "operator password for tests"
	secVictimPassword   = "victim password for tests"
)

// A secHarness sends raw requests to a rig's appliance: without the
// API client's help, so that they can be as malformed as needed.
type secHarness struct {
	t    *testing.T
	r    *applianceRig
	http *http.Client
}

func newSecHarness(t *testing.T, r *applianceRig) *secHarness {
	return newSecHarnessFrom(t, r, "")
}

// newSecHarnessFrom returns a harness whose connections come from the
// loopback address ip ("" for the default), so that the appliance, which
// limits logins per address, sees another client.
func newSecHarnessFrom(t *testing.T, r *applianceRig, ip string) *secHarness {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if ip != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	tr := &http.Transport{
		DialContext: d.DialContext,
		// The certificate is the rig's own; these tests are not about TLS.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &secHarness{t: t, r: r, http: &http.Client{
		Transport: tr,
		// Redirects are answers to check, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// A secReq is one request. Its path is sent as given, escapes included.
type secReq struct {
	method, path string
	body         []byte // nil for none
	ctype        string // Content-Type of a body: "" means application/json, "-" none
	authz        string // the Authorization header, if not ""
	cookie       string // the session cookie's value, if not ""
	csrf         string // the X-CSRF-Token header, if not ""
}

type secResp struct {
	status int
	header http.Header
	body   []byte
}

func (r secResp) String() string {
	b := r.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(b))
}

// apiError decodes an error body, which must be the API's JSON error.
func (r secResp) apiError() (api.Error, error) {
	var e api.Error
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return e, fmt.Errorf("content type %q, not JSON", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("error body %q: %v", r.body, err)
	}
	if e.Error == "" || e.Code == "" {
		return e, fmt.Errorf("error body %q: no error or no code", r.body)
	}
	return e, nil
}

func (h *secHarness) base() string { return h.r.ap.URL() }

func (h *secHarness) do(q secReq) secResp {
	h.t.Helper()
	resp, err := h.try(q)
	if err != nil {
		h.t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	return resp
}

func (h *secHarness) try(q secReq) (secResp, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var body io.Reader
	if q.body != nil {
		body = bytes.NewReader(q.body)
	}
	req, err := http.NewRequestWithContext(ctx, q.method, h.base()+q.path, body)
	if err != nil {
		return secResp{}, err
	}
	if q.body != nil {
		switch q.ctype {
		case "":
			req.Header.Set("Content-Type", "application/json")
		case "-":
		default:
			req.Header.Set("Content-Type", q.ctype)
		}
	}
	if q.authz != "" {
		req.Header.Set("Authorization", q.authz)
	}
	if q.cookie != "" {
		req.Header.Add("Cookie", api.SessionCookie+"="+q.cookie)
	}
	if q.csrf != "" {
		req.Header.Set(api.CSRFHeader, q.csrf)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return secResp{}, err
	}
	defer resp.Body.Close()
	out := secResp{status: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return out, nil // a live stream: its status is the answer
	}
	out.body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return out, err
}

// want checks resp's status and, for an error, that its body is the API's
// JSON error with code.
func (h *secHarness) want(what string, resp secResp, status int, code string) api.Error {
	h.t.Helper()
	if resp.status != status {
		h.t.Errorf("%s: %s, want %d %s", what, resp, status, code)
		return api.Error{}
	}
	if code == "" {
		return api.Error{}
	}
	e, err := resp.apiError()
	if err != nil {
		h.t.Errorf("%s: %v", what, err)
	} else if e.Code != code {
		h.t.Errorf("%s: code %q, want %q (%s)", what, e.Code, code, e.Error)
	}
	return e
}

// A secSession is a logged-in session, as a browser holds it.
type secSession struct {
	cookie, csrf string
	resp         secResp // the login's response
}

func (h *secHarness) login(user, password string) secSession {
	h.t.Helper()
	body, _ := json.Marshal(api.LoginRequest{Username: user, Password: password})
	resp := h.do(secReq{method: http.MethodPost, path: api.Prefix + "/sessions", body: body})
	if resp.status != http.StatusCreated {
		h.t.Fatalf("log in as %s: %s", user, resp)
	}
	var info api.SessionInfo
	if err := json.Unmarshal(resp.body, &info); err != nil || info.CSRFToken == "" {
		h.t.Fatalf("log in as %s: %s: %v", user, resp.body, err)
	}
	s := secSession{csrf: info.CSRFToken, resp: resp}
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == api.SessionCookie {
			s.cookie = c.Value
		}
	}
	if s.cookie == "" {
		h.t.Fatalf("log in as %s: no session cookie in %v", user, resp.header)
	}
	return s
}

func secLoginBody(user, password string) []byte {
	b, _ := json.Marshal(api.LoginRequest{Username: user, Password: password})
	return b
}

// secFill fills a route's path parameters.
func secFill(path, name, id string) string {
	return strings.NewReplacer("{name}", name, "{id}", id, "{volume}", name).Replace(path)
}

func secStatus(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

func secCreateUser(t *testing.T, c *api.Client, name, password string, role auth.Role) {
	t.Helper()
	if err := c.Do(context.Background(), http.MethodPost, api.Prefix+"/users",
		api.NewUser{Name: name, Password: password, Role: role}, nil); err != nil {
		t.Fatal(err)
	}
}

func secCreateToken(t *testing.T, c *api.Client, spec api.NewToken) api.CreatedToken {
	t.Helper()
	var tok api.CreatedToken
	if err := c.Do(context.Background(), http.MethodPost, api.Prefix+"/tokens", spec, &tok); err != nil {
		t.Fatalf("create token %+v: %v", spec, err)
	}
	if tok.Secret == "" || tok.ID == "" {
		t.Fatalf("create token %+v: %+v", spec, tok)
	}
	return tok
}

// secState is what the API shows of everything that a refused request
// could have created, changed or deleted, without what changes by itself
// (a token's last use, a job's next run).
type secState struct {
	Users, Tokens, Jobs, VCenters, Tasks, Points []string
}

func secSnapshot(t *testing.T, c *api.Client) secState {
	t.Helper()
	ctx := context.Background()
	get := func(path string, v any) {
		t.Helper()
		if err := c.Do(ctx, http.MethodGet, api.Prefix+path, nil, v); err != nil {
			t.Fatal(err)
		}
	}
	var s secState
	var users []auth.User
	get("/users", &users)
	for _, u := range users {
		s.Users = append(s.Users, fmt.Sprintf("%s %s %s", u.Name, u.Role, u.Updated.Format(time.RFC3339Nano)))
	}
	var tokens []auth.Token
	get("/tokens", &tokens)
	for _, tk := range tokens {
		s.Tokens = append(s.Tokens, fmt.Sprintf("%s %s %s %s %s", tk.ID, tk.Owner, tk.Role, tk.VM, tk.Expires))
	}
	var js []api.JobView
	get("/jobs", &js)
	for _, j := range js {
		s.Jobs = append(s.Jobs, fmt.Sprintf("%s %v %s %v", j.Name, j.Enabled, j.Updated.Format(time.RFC3339Nano), j.Running))
	}
	var vcs []api.VCenterView
	get("/vcenters", &vcs)
	for _, v := range vcs {
		s.VCenters = append(s.VCenters, fmt.Sprintf("%s %s %s", v.Name, v.URL, v.Username))
	}
	var ts []tasks.Task
	get("/tasks", &ts)
	for _, tk := range ts {
		s.Tasks = append(s.Tasks, fmt.Sprintf("%s %s %s", tk.ID, tk.Kind, tk.State))
	}
	var ps []api.PointView
	get("/points", &ps)
	for _, p := range ps {
		s.Points = append(s.Points, fmt.Sprintf("%s %v", p.ID, p.Pinned))
	}
	return s
}

func secSameState(t *testing.T, before, after secState) {
	t.Helper()
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the state changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

func secAudit(t *testing.T, c *api.Client) []auth.AuditEntry {
	t.Helper()
	var entries []auth.AuditEntry
	if err := c.Do(context.Background(), http.MethodGet, api.Prefix+"/audit?limit=1000", nil, &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

// secMetric returns the value of an unlabelled metric.
func secMetric(t *testing.T, c *api.Client, name string) float64 {
	t.Helper()
	resp, err := c.Stream(context.Background(), "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	t.Fatalf("no metric %s in /metrics", name)
	return 0
}

func secRandomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestSecurityNoCredentials: every route but /healthz and login answers a
// request without valid credentials with 401, a JSON error and a
// WWW-Authenticate header, whatever the credentials look like.
func TestSecurityNoCredentials(t *testing.T) {
	r := newApplianceRig(t, nil)
	h := newSecHarness(t, r)
	admin := r.admin()
	tok := secCreateToken(t, admin, api.NewToken{Name: "real", Role: auth.RoleAdmin})
	sess := h.login(r.cfg.AdminUser, adminPassword)
	before := secSnapshot(t, admin)

	// Variants of the real credentials that must not pass for them.
	otherKey := secRandomKey()
	altered := []byte(sess.cookie)
	altered[0] ^= 'A' ^ 'B'
	if altered[0] == sess.cookie[0] {
		altered[0] = 'C'
	}
	basic := base64.StdEncoding.EncodeToString([]byte(r.cfg.AdminUser + ":" + adminPassword))
	creds := []struct {
		name string
		q    secReq
	}{
		{"no credentials", secReq{}},
		{"garbage bearer token", secReq{authz: "Bearer garbage"}},
		{"well-formed unknown token", secReq{authz: "Bearer bwk_0123456789abcdef_" + secRandomKey()}},
		{"real token ID with another key", secReq{authz: "Bearer bwk_" + tok.ID + "_" + otherKey}},
		{"real token with a byte more", secReq{authz: "Bearer " + tok.Secret + "A"}},
		{"real token with a byte less", secReq{authz: "Bearer " + tok.Secret[:len(tok.Secret)-1]}},
		{"real token without the scheme", secReq{authz: tok.Secret}},
		{"real token with another scheme", secReq{authz: "Token " + tok.Secret}},
		{"basic authentication", secReq{authz: "Basic " + basic}},
		{"scheme only", secReq{authz: "Bearer"}},
		{"empty bearer token", secReq{authz: "Bearer    "}},
		{"garbage bearer beside a valid session", secReq{authz: "Bearer garbage", cookie: sess.cookie, csrf: sess.csrf}},
		{"forged session cookie", secReq{cookie: secRandomKey(), csrf: sess.csrf}},
		{"garbage session cookie", secReq{cookie: "not-a-session"}},
		{"altered session cookie", secReq{cookie: string(altered), csrf: sess.csrf}},
		{"session cookie with a byte more", secReq{cookie: sess.cookie + "A", csrf: sess.csrf}},
		{"CSRF token without a session", secReq{csrf: sess.csrf}},
	}
	routes := r.ap.Routes()
	for _, rt := range routes {
		path := secFill(rt.Path, "x", "0123456789abcdef")
		if secPolicy[rt.Method+" "+rt.Path] == accPublic {
			resp := h.do(secReq{method: rt.Method, path: path})
			if resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden || resp.status >= 500 {
				t.Errorf("public %s %s without credentials: %s", rt.Method, path, resp)
			}
			continue
		}
		for _, c := range creds {
			q := c.q
			q.method, q.path = rt.Method, path
			resp := h.do(q)
			what := fmt.Sprintf("%s %s with %s", rt.Method, path, c.name)
			h.want(what, resp, http.StatusUnauthorized, "unauthorized")
			if got := resp.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
				t.Errorf("%s: WWW-Authenticate %q", what, got)
			}
		}
	}
	if resp := h.do(secReq{method: http.MethodGet, path: "/healthz"}); resp.status != http.StatusOK {
		t.Errorf("/healthz: %s", resp)
	}
	secSameState(t, before, secSnapshot(t, admin))
	// The real credentials still work.
	h.want("the real token", h.do(secReq{method: http.MethodGet, path: api.Prefix + "/session", authz: "Bearer " + tok.Secret}), http.StatusOK, "")
	h.want("the real session", h.do(secReq{method: http.MethodGet, path: api.Prefix + "/session", cookie: sess.cookie}), http.StatusOK, "")
}

// TestSecurityRoles: operators get 403 from every admin route, file-restore
// tokens from every route that is not theirs, and neither can raise its
// role by making tokens.
func TestSecurityRoles(t *testing.T) {
	r := newApplianceRig(t, nil)
	h := newSecHarness(t, r)
	ctx := context.Background()
	admin := r.admin()

	routes := r.ap.Routes()
	served := map[string]bool{}
	for _, rt := range routes {
		k := rt.Method + " " + rt.Path
		served[k] = true
		if _, ok := secPolicy[k]; !ok {
			t.Errorf("route %s has no expected access in secPolicy: classify it", k)
		}
	}
	for k := range secPolicy {
		if !served[k] {
			t.Errorf("secPolicy names %s, which is not served", k)
		}
	}

	secCreateUser(t, admin, "op", secOperatorPassword, auth.RoleOperator)
	op := r.client()
	if _, err := op.Login(ctx, "op", secOperatorPassword); err != nil {
		t.Fatal(err)
	}
	opSess := h.login("op", secOperatorPassword)
	fr := secCreateToken(t, admin, api.NewToken{Name: "restore", Role: auth.RoleFileRestore, VM: "some-vm", TTL: "1h"})
	adminTok := secCreateToken(t, admin, api.NewToken{Name: "admin-script", Role: auth.RoleAdmin})
	before := secSnapshot(t, admin)

	for _, rt := range routes {
		k := rt.Method + " " + rt.Path
		acc := secPolicy[k]
		if acc == accPublic {
			continue
		}
		path := secFill(rt.Path, "x", "0123456789abcdef")
		// Logging out would end the session the other checks use.
		if k != "DELETE /api/v1/session" {
			resp := h.do(secReq{method: rt.Method, path: path, cookie: opSess.cookie, csrf: opSess.csrf})
			what := "operator: " + rt.Method + " " + path
			switch {
			case acc == accAdmin:
				h.want(what, resp, http.StatusForbidden, "forbidden")
			case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden || resp.status >= 500:
				t.Errorf("%s: %s, want access", what, resp)
			}
		}
		resp := h.do(secReq{method: rt.Method, path: path, authz: "Bearer " + fr.Secret})
		what := "file-restore token: " + rt.Method + " " + path
		switch {
		case acc == accOperator || acc == accAdmin:
			h.want(what, resp, http.StatusForbidden, "forbidden")
		case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden || resp.status >= 500:
			t.Errorf("%s: %s, want access", what, resp)
		}
	}
	secSameState(t, before, secSnapshot(t, admin))

	// An operator cannot make an admin token: a token allows no more than
	// its owner.
	err := op.Do(ctx, http.MethodPost, api.Prefix+"/tokens", api.NewToken{Name: "escalate", Role: auth.RoleAdmin}, nil)
	if secStatus(err) != http.StatusBadRequest {
		t.Errorf("operator creates an admin token: %v, want 400", err)
	}
	// Nor change its own role, nor manage users.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPatch, "/users/op", api.UserUpdate{Role: auth.RoleAdmin}},
		{http.MethodDelete, "/users/" + r.cfg.AdminUser, nil},
		{http.MethodDelete, "/users/op", nil},
		{http.MethodPost, "/users", api.NewUser{Name: "op2", Password: secOperatorPassword, Role: auth.RoleAdmin}},
		{http.MethodPatch, "/users/" + r.cfg.AdminUser, api.UserUpdate{Password: "a new admin password"}},
		{http.MethodDelete, "/points/0123456789abcdef", nil},
		{http.MethodPost, "/store/prune", api.PruneRequest{DryRun: false, Policy: secRetention(t, `{"last":1}`)}},
	} {
		err := op.Do(ctx, c.method, api.Prefix+c.path, c.body, nil)
		if secStatus(err) != http.StatusForbidden {
			t.Errorf("operator %s %s: %v, want 403", c.method, c.path, err)
		}
	}
	// A dry run of a prune is the operator's to make.
	var decisions []api.PruneDecision
	if err := op.Do(ctx, http.MethodPost, api.Prefix+"/store/prune", api.PruneRequest{DryRun: true, Policy: secRetention(t, `{"last":1}`)}, &decisions); err != nil {
		t.Errorf("operator's dry-run prune: %v", err)
	}
	secSameState(t, before, secSnapshot(t, admin))

	// An operator's token cannot mint tokens, of any role; its session can.
	opTok := secCreateToken(t, op, api.NewToken{Name: "op-script", Role: auth.RoleOperator})
	opTokClient := r.client().WithToken(opTok.Secret)
	mid := secSnapshot(t, admin)
	for _, spec := range []api.NewToken{
		{Name: "minted", Role: auth.RoleOperator},
		{Name: "minted", Role: auth.RoleFileRestore, VM: "some-vm", TTL: "1h"},
		{Name: "minted", Role: auth.RoleAdmin},
	} {
		err := opTokClient.Do(ctx, http.MethodPost, api.Prefix+"/tokens", spec, nil)
		if secStatus(err) != http.StatusForbidden {
			t.Errorf("operator's token mints a %s token: %v, want 403", spec.Role, err)
		}
	}
	// A file-restore token cannot either.
	frClient := r.client().WithToken(fr.Secret)
	err = frClient.Do(ctx, http.MethodPost, api.Prefix+"/tokens", api.NewToken{Name: "minted", Role: auth.RoleFileRestore, VM: "other-vm", TTL: "1h"}, nil)
	if secStatus(err) != http.StatusForbidden {
		t.Errorf("file-restore token mints a token: %v, want 403", err)
	}
	// Passwords are changed from sessions, not with tokens.
	err = frClient.Do(ctx, http.MethodPut, api.Prefix+"/session/password", api.PasswordChange{Current: adminPassword, New: "a new admin password"}, nil)
	if secStatus(err) != http.StatusForbidden {
		t.Errorf("file-restore token changes its owner's password: %v, want 403", err)
	}
	// An operator sees only its own tokens, and cannot revoke the admin's:
	// to it, they do not exist.
	var seen []auth.Token
	if err := op.Do(ctx, http.MethodGet, api.Prefix+"/tokens", nil, &seen); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].ID != opTok.ID {
		t.Errorf("operator lists tokens %+v, want only its own %s", seen, opTok.ID)
	}
	for _, id := range []string{adminTok.ID, fr.ID} {
		err := op.Do(ctx, http.MethodDelete, api.Prefix+"/tokens/"+id, nil, nil)
		if secStatus(err) != http.StatusNotFound {
			t.Errorf("operator revokes the admin's token %s: %v, want 404", id, err)
		}
	}
	secSameState(t, mid, secSnapshot(t, admin))
	h.want("the admin's token after the operator's attempts", h.do(secReq{method: http.MethodGet, path: api.Prefix + "/users", authz: "Bearer " + adminTok.Secret}), http.StatusOK, "")

	// A demoted admin's token and session are demoted with it.
	secCreateUser(t, admin, "boss", secOperatorPassword, auth.RoleAdmin)
	boss := r.client()
	if _, err := boss.Login(ctx, "boss", secOperatorPassword); err != nil {
		t.Fatal(err)
	}
	bossTok := secCreateToken(t, boss, api.NewToken{Name: "boss-script", Role: auth.RoleAdmin})
	if err := admin.Do(ctx, http.MethodPatch, api.Prefix+"/users/boss", api.UserUpdate{Role: auth.RoleOperator}, nil); err != nil {
		t.Fatal(err)
	}
	if err := boss.Do(ctx, http.MethodGet, api.Prefix+"/users", nil, nil); secStatus(err) != http.StatusForbidden {
		t.Errorf("demoted admin's session lists users: %v, want 403", err)
	}
	if err := r.client().WithToken(bossTok.Secret).Do(ctx, http.MethodGet, api.Prefix+"/users", nil, nil); secStatus(err) != http.StatusForbidden {
		t.Errorf("demoted admin's admin token lists users: %v, want 403", err)
	}

	// The denials are in the audit log.
	denied := 0
	for _, e := range secAudit(t, admin) {
		if e.Actor == "op" && e.Outcome == auth.OutcomeDenied && strings.HasPrefix(e.Action, "access ") {
			denied++
		}
	}
	if denied == 0 {
		t.Error("the audit log has no denied access of the operator")
	}
}

func secRetention(t *testing.T, s string) (p retention.Policy) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// secWaitRun polls a run until it ends.
func secWaitRun(t *testing.T, c *api.Client, id string, timeout time.Duration) jobs.Run {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var run jobs.Run
		if err := c.Do(context.Background(), http.MethodGet, api.Prefix+"/runs/"+id, nil, &run); err != nil {
			t.Fatal(err)
		}
		if run.Result != jobs.ResultRunning && !run.Ended.IsZero() {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not end within %v: %+v", id, timeout, run)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSecurityWithLab backs up two VMs of the lab through the API, then
// checks what a file-restore token of one of them can see of the other,
// and that no response shows a secret.
func TestSecurityWithLab(t *testing.T) {
	r := newApplianceRig(t, &lab.Options{VMs: 2, Disks: 1, DiskSize: 64 << 20})
	ctx := context.Background()
	admin := r.admin()

	job := jobs.Job{Name: "both", VCenter: "lab", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily"}
	if err := admin.Do(ctx, http.MethodPost, api.Prefix+"/jobs", job, nil); err != nil {
		t.Fatal(err)
	}
	var started api.RunStarted
	if err := admin.Do(ctx, http.MethodPost, api.Prefix+"/jobs/both/run", nil, &started); err != nil {
		t.Fatal(err)
	}
	run := secWaitRun(t, admin, started.RunID, 45*time.Second)
	if run.Result != jobs.ResultSuccess || len(run.VMs) != 2 {
		t.Fatalf("run %s with %d VMs: %s", run.Result, len(run.VMs), run.Error)
	}
	var points []api.PointView
	if err := admin.Do(ctx, http.MethodGet, api.Prefix+"/points", nil, &points); err != nil {
		t.Fatal(err)
	}
	if len(points) != 2 || points[0].Source.Name == points[1].Source.Name {
		t.Fatalf("points: %+v, want one of each of 2 VMs", points)
	}
	slices.SortFunc(points, func(a, b api.PointView) int { return strings.Compare(a.Source.Name, b.Source.Name) })
	a, b := points[0], points[1]

	t.Run("FileRestoreTokenScope", func(t *testing.T) {
		h := newSecHarness(t, r)
		fr := secCreateToken(t, admin, api.NewToken{Name: "restore-a", Role: auth.RoleFileRestore, VM: a.Source.Name, TTL: "1h"})
		bearer := "Bearer " + fr.Secret
		before := secSnapshot(t, admin)
		get := func(path string) secResp {
			return h.do(secReq{method: http.MethodGet, path: api.Prefix + path, authz: bearer})
		}
		listPoints := func(path string) []api.PointView {
			t.Helper()
			resp := get(path)
			var ps []api.PointView
			if resp.status != http.StatusOK || json.Unmarshal(resp.body, &ps) != nil {
				t.Fatalf("GET %s: %s", path, resp)
			}
			return ps
		}
		if ps := listPoints("/points"); len(ps) != 1 || ps[0].ID != a.ID {
			t.Errorf("GET /points: %+v, want only %s of %s", ps, a.ID, a.Source.Name)
		}
		for _, vm := range []string{b.Source.Name, b.Source.VMName, b.Source.VMUUID, b.Source.MoRef} {
			if vm == "" {
				continue
			}
			if ps := listPoints("/points?vm=" + url.QueryEscape(vm)); len(ps) != 0 {
				t.Errorf("GET /points?vm=%s: %+v, want none", vm, ps)
			}
		}
		if ps := listPoints("/points?vm=" + url.QueryEscape(a.Source.Name)); len(ps) != 1 || ps[0].ID != a.ID {
			t.Errorf("GET /points?vm=<A>: %+v, want %s", ps, a.ID)
		}
		if ps := listPoints("/points?job=both"); len(ps) != 1 || ps[0].ID != a.ID {
			t.Errorf("GET /points?job=both: %+v, want only %s", ps, a.ID)
		}
		var vms []api.VMPoints
		if resp := get("/vms"); resp.status != http.StatusOK || json.Unmarshal(resp.body, &vms) != nil {
			t.Errorf("GET /vms: %s", resp)
		} else if len(vms) != 1 || vms[0].Source.Name != a.Source.Name {
			t.Errorf("GET /vms: %+v, want only %s", vms, a.Source.Name)
		}
		// Its own point, whole or by prefix.
		for _, id := range []string{a.ID, a.ID[:8]} {
			h.want("GET its own point "+id, get("/points/"+id), http.StatusOK, "")
		}
		// The other VM's point does not exist, by any name.
		bIDs := []string{b.ID, b.ID[:8], strings.ToUpper(b.ID[:8]), b.ID[:12]}
		for _, id := range bIDs {
			e := h.want("GET the other VM's point "+id, get("/points/"+id), http.StatusNotFound, "not_found")
			if strings.Contains(e.Error, b.Source.Name) || strings.Contains(e.Error, b.Source.VMName) {
				t.Errorf("the 404 of %s names the other VM: %s", id, e.Error)
			}
		}
		// Changing points is for operators and admins, whichever VM.
		for _, id := range []string{a.ID, b.ID} {
			for _, m := range []struct{ method, path string }{
				{http.MethodPost, "/points/" + id + "/pin"},
				{http.MethodDelete, "/points/" + id + "/pin"},
				{http.MethodDelete, "/points/" + id},
			} {
				resp := h.do(secReq{method: m.method, path: api.Prefix + m.path, authz: bearer})
				h.want("file-restore token: "+m.method+" "+m.path, resp, http.StatusForbidden, "forbidden")
			}
		}
		// Nor does it see jobs, runs, tasks, events or the vCenter, which
		// name the other VM.
		for _, path := range []string{"/jobs", "/jobs/both", "/jobs/both/runs", "/runs/" + started.RunID,
			"/tasks", "/events", "/vcenters/lab/inventory", "/store/stats"} {
			h.want("file-restore token: GET "+path, get(path), http.StatusForbidden, "forbidden")
		}
		secSameState(t, before, secSnapshot(t, admin))

		// The denied reads are in the audit log, with the token.
		denied := map[string]bool{}
		for _, e := range secAudit(t, admin) {
			if e.Action == "read point" && e.Outcome == auth.OutcomeDenied && strings.Contains(e.Actor, fr.ID) {
				denied[e.Target] = true
			}
		}
		for _, id := range bIDs {
			if !denied[id] {
				t.Errorf("no denied read of %s in the audit log (denied: %v)", id, denied)
			}
		}
	})

	t.Run("ResponseHygiene", func(t *testing.T) {
		secResponseHygiene(t, r, admin, a)
	})
}

// secResponseHygiene sends requests that go wrong in many ways, and checks
// that no response shows a password, a token secret or a session cookie,
// and that every response has the security headers.
func secResponseHygiene(t *testing.T, r *applianceRig, admin *api.Client, pt api.PointView) {
	ctx := context.Background()
	h := newSecHarness(t, r)
	// Failed logins come from another address, so as not to lock out the
	// tests' own.
	other := newSecHarnessFrom(t, r, "127.0.0.5")

	storePassword, err := r.cfg.Store.Password()
	if err != nil {
		t.Fatal(err)
	}
	adminTok := secCreateToken(t, admin, api.NewToken{Name: "hygiene", Role: auth.RoleAdmin})
	fr := secCreateToken(t, admin, api.NewToken{Name: "hygiene-restore", Role: auth.RoleFileRestore, VM: pt.Source.Name, TTL: "1h"})
	sess := h.login(r.cfg.AdminUser, adminPassword)
	secCreateUser(t, admin, "op", secOperatorPassword, auth.RoleOperator)
	opSess := h.login("op", secOperatorPassword)
	secrets := map[string]string{
		"the store password":          string(storePassword),
		"the vCenter password":        r.lab.Password(),
		"the admin password":          adminPassword,
		"the operator password":       secOperatorPassword,
		"the admin token":             adminTok.Secret,
		"the file-restore token":      fr.Secret,
		"the admin session cookie":    sess.cookie,
		"the operator session cookie": opSess.cookie,
	}
	for what, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("%s %q is too short to look for", what, s)
		}
	}
	// The key part of a token secret is as secret as the whole. It is
	// base64url, which has '_' too: it follows the second one.
	for what, s := range map[string]string{"the admin token": adminTok.Secret, "the file-restore token": fr.Secret} {
		secrets[what+"'s key"] = strings.SplitN(s, "_", 3)[2]
	}

	u := r.lab.URL()
	u.User = nil
	bearer := "Bearer " + adminTok.Secret
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	type sent struct {
		q    secReq
		from *secHarness
	}
	reqs := []sent{
		// Logins that fail, with secrets where they do not belong.
		{secReq{method: http.MethodPost, path: "/api/v1/sessions", body: js(api.LoginRequest{Username: r.cfg.AdminUser, Password: r.lab.Password()})}, other},
		{secReq{method: http.MethodPost, path: "/api/v1/sessions", body: js(api.LoginRequest{Username: adminPassword, Password: adminPassword})}, other},
		{secReq{method: http.MethodPost, path: "/api/v1/sessions", body: js(api.LoginRequest{Username: adminTok.Secret, Password: string(storePassword)})}, other},
		{secReq{method: http.MethodPost, path: "/api/v1/sessions", body: []byte(`{"username":"` + fr.Secret + `","password":` + strconv.Quote(adminPassword))}, other},
		{secReq{method: http.MethodPut, path: "/api/v1/session/password", cookie: opSess.cookie, csrf: opSess.csrf,
			body: js(api.PasswordChange{Current: adminPassword, New: r.lab.Password()})}, other},
		// Credentials that are nearly right.
		{secReq{method: http.MethodGet, path: "/api/v1/session", authz: bearer + "x"}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/session", authz: "Bearer " + adminTok.Secret[:len(adminTok.Secret)-2] + "AA"}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/session", authz: "Basic " + adminTok.Secret}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/session", cookie: sess.cookie + "x"}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/tokens", cookie: sess.cookie, csrf: opSess.csrf, body: js(api.NewToken{Name: "x", Role: auth.RoleAdmin})}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/points/" + pt.ID, authz: "Bearer " + fr.Secret + "0"}, h},
		// Bodies that fail with secrets in them.
		{secReq{method: http.MethodPost, path: "/api/v1/users", authz: bearer, body: js(api.NewUser{Name: adminTok.Secret + "!", Password: r.lab.Password(), Role: auth.RoleAdmin})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/users", authz: bearer, body: js(api.NewUser{Name: "u1", Password: "short", Role: auth.RoleAdmin})}, h},
		{secReq{method: http.MethodPatch, path: "/api/v1/users/op", authz: bearer, body: js(map[string]any{"password": 12})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/tokens", authz: bearer, body: js(api.NewToken{Name: "t", Role: auth.RoleFileRestore, VM: fr.Secret, TTL: adminPassword})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/users", authz: bearer, body: []byte(`{"name":"u2","password":` + strconv.Quote(r.lab.Password()) + `,"role":"admin"`)}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/users", authz: bearer, body: []byte(`{"name":"u2","password":` + strconv.Quote(r.lab.Password()) + `,"role":"admin","x":1}`)}, h},
		// vCenters: a wrong password, a right one with a wrong certificate
		// pin, a wrong URL, and the stored one.
		{secReq{method: http.MethodPost, path: "/api/v1/vcenters", authz: bearer, body: js(api.NewVCenter{Name: "lab2", URL: u.String(), Username: r.lab.Username(), Password: r.lab.Password() + "x", Insecure: true})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/vcenters", authz: bearer, body: js(api.NewVCenter{Name: "lab2", URL: u.String(), Username: r.lab.Username(), Password: r.lab.Password(), Thumbprint: strings.Repeat("ab", 32)})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/vcenters", authz: bearer, body: js(api.NewVCenter{Name: "lab2", URL: "https://127.0.0.1:1/sdk", Username: r.lab.Username(), Password: r.lab.Password(), Insecure: true})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/vcenters", authz: bearer, body: js(api.NewVCenter{Name: "lab", URL: u.String(), Username: r.lab.Username(), Password: r.lab.Password(), Insecure: true, Replace: true})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/vcenters", authz: bearer,
			body: js(api.NewVCenter{Name: "lab3", URL: "https://" + r.lab.Username() + ":" + r.lab.Password() + "@" + u.Host + "/sdk", Username: r.lab.Username(), Password: r.lab.Password(), Insecure: true})}, h},
		{secReq{method: http.MethodPost, path: "/api/v1/vcenters/lab/test", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/vcenters", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/vcenters/lab", authz: bearer}, h},
		{secReq{method: http.MethodDelete, path: "/api/v1/vcenters/lab", authz: bearer}, h},
		// What lists users, tokens and the audit log.
		{secReq{method: http.MethodGet, path: "/api/v1/users", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/users/op", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/tokens", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/session", cookie: sess.cookie}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/session", authz: "Bearer " + fr.Secret}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/jobs", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/points/" + pt.ID, authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/store/stats", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/nowhere", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/healthz"}, h},
		{secReq{method: http.MethodGet, path: "/metrics", authz: bearer}, h},
		{secReq{method: http.MethodGet, path: "/api/v1/openapi.json", authz: bearer}, h},
	}
	var resps []secResp
	var what []string
	var sentBodies [][]byte
	for _, s := range reqs {
		resps = append(resps, s.from.do(s.q))
		what = append(what, s.q.method+" "+s.q.path)
		sentBodies = append(sentBodies, s.q.body)
	}
	// The audit log last, with all of the above in it.
	audit := secReq{method: http.MethodGet, path: "/api/v1/audit?limit=1000", authz: bearer}
	resps = append(resps, h.do(audit))
	what = append(what, "GET /api/v1/audit")
	sentBodies = append(sentBodies, nil)

	for i, resp := range resps {
		for name, s := range secrets {
			// An error may quote what its own request's body said, to
			// whoever sent it; any other secret must not appear.
			if bytes.Contains(sentBodies[i], []byte(s)) {
				continue
			}
			if bytes.Contains(resp.body, []byte(s)) {
				t.Errorf("%s: %d response shows %s: %s", what[i], resp.status, name, resp.body)
			}
			for k, vs := range resp.header {
				for _, v := range vs {
					if strings.Contains(v, s) {
						t.Errorf("%s: header %s shows %s", what[i], k, name)
					}
				}
			}
		}
		if bytes.Contains(resp.body, []byte("$argon2")) || bytes.Contains(resp.body, []byte(`"hash"`)) {
			t.Errorf("%s: response shows a password hash: %s", what[i], resp.body)
		}
		secCheckHeaders(t, what[i], resp)
	}
	// The requests that should fail did, and the vCenter stayed.
	for i, resp := range resps {
		if strings.HasPrefix(what[i], "POST /api/v1/vcenters") && !strings.HasSuffix(what[i], "/test") && resp.status < 400 {
			t.Errorf("%s: %s, want an error", what[i], resp)
		}
	}
	var vcs []api.VCenterView
	if err := admin.Do(ctx, http.MethodGet, api.Prefix+"/vcenters", nil, &vcs); err != nil || len(vcs) != 1 {
		t.Errorf("vCenters after the attempts: %+v, %v", vcs, err)
	}
	// The users are listed without hashes: the body has exactly the
	// fields of auth.User.
	resp := h.do(secReq{method: http.MethodGet, path: "/api/v1/users", authz: bearer})
	var users []map[string]any
	if err := json.Unmarshal(resp.body, &users); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		for k := range u {
			if !slices.Contains([]string{"name", "role", "created", "updated"}, k) {
				t.Errorf("GET /users shows field %q of %v", k, u["name"])
			}
		}
	}
}

// secCheckHeaders checks the security headers every response must have.
func secCheckHeaders(t *testing.T, what string, resp secResp) {
	t.Helper()
	if v := resp.header.Get("Strict-Transport-Security"); !strings.HasPrefix(v, "max-age=") {
		t.Errorf("%s: Strict-Transport-Security %q", what, v)
	}
	if v := resp.header.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, v)
	}
	path := strings.Fields(what)[1]
	if strings.HasPrefix(path, api.Prefix) {
		if v := resp.header.Get("Cache-Control"); v != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", what, v)
		}
	}
}

// TestSecurityTokenLifetimes: credentials stop working when they expire,
// are revoked, are logged out, or their user is deleted.
func TestSecurityTokenLifetimes(t *testing.T) {
	r := newApplianceRig(t, nil)
	h := newSecHarness(t, r)
	ctx := context.Background()
	admin := r.admin()
	whoami := func(q secReq) secResp {
		q.method, q.path = http.MethodGet, api.Prefix+"/session"
		return h.do(q)
	}

	// A file-restore token must expire, and not in the past.
	for _, ttl := range []string{"", "0s", "-1s", "1x", "2161h"} {
		err := admin.Do(ctx, http.MethodPost, api.Prefix+"/tokens", api.NewToken{Name: "bad-ttl", Role: auth.RoleFileRestore, VM: "vm-a", TTL: ttl}, nil)
		if secStatus(err) != http.StatusBadRequest {
			t.Errorf("file-restore token with ttl %q: %v, want 400", ttl, err)
		}
	}
	// The shortest lifetime allowed is a nanosecond: such a token is
	// expired from the start.
	born := secCreateToken(t, admin, api.NewToken{Name: "born-expired", Role: auth.RoleFileRestore, VM: "vm-a", TTL: "1ns"})
	e := h.want("token with ttl 1ns", whoami(secReq{authz: "Bearer " + born.Secret}), http.StatusUnauthorized, "unauthorized")
	if !strings.Contains(e.Error, "expired") {
		t.Errorf("token with ttl 1ns: %q, want expired", e.Error)
	}
	// A token of a second works, then expires by the appliance's clock.
	created := time.Now()
	short := secCreateToken(t, admin, api.NewToken{Name: "short", Role: auth.RoleFileRestore, VM: "vm-a", TTL: "1s"})
	bearer := "Bearer " + short.Secret
	first := whoami(secReq{authz: bearer})
	if first.status != http.StatusOK && time.Since(created) < time.Second {
		t.Errorf("a token of 1s before its second: %s", first)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp := whoami(secReq{authz: bearer})
		if resp.status != http.StatusOK {
			e := h.want("expired token", resp, http.StatusUnauthorized, "unauthorized")
			if !strings.Contains(e.Error, "expired") {
				t.Errorf("expired token: %q, want expired", e.Error)
			}
			if since := time.Since(created); since < time.Second {
				t.Errorf("the token of 1s expired after %v", since)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a token of 1s still works after 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A revoked token.
	rev := secCreateToken(t, admin, api.NewToken{Name: "revoked", Role: auth.RoleOperator})
	h.want("token before revocation", whoami(secReq{authz: "Bearer " + rev.Secret}), http.StatusOK, "")
	if err := admin.Do(ctx, http.MethodDelete, api.Prefix+"/tokens/"+rev.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	e = h.want("revoked token", whoami(secReq{authz: "Bearer " + rev.Secret}), http.StatusUnauthorized, "unauthorized")
	if !strings.Contains(e.Error, "revoked") {
		t.Errorf("revoked token: %q", e.Error)
	}
	if err := admin.Do(ctx, http.MethodDelete, api.Prefix+"/tokens/"+rev.ID, nil, nil); secStatus(err) != http.StatusNotFound {
		t.Errorf("revoke a revoked token: %v, want 404", err)
	}

	// A session after logout, for reading and for changing.
	sess := h.login(r.cfg.AdminUser, adminPassword)
	h.want("session before logout", whoami(secReq{cookie: sess.cookie}), http.StatusOK, "")
	out := h.do(secReq{method: http.MethodDelete, path: api.Prefix + "/session", cookie: sess.cookie, csrf: sess.csrf})
	h.want("logout", out, http.StatusNoContent, "")
	cleared := false
	for _, c := range (&http.Response{Header: out.header}).Cookies() {
		cleared = cleared || c.Name == api.SessionCookie && c.Value == "" && c.MaxAge < 0
	}
	if !cleared {
		t.Errorf("logout does not clear the cookie: %v", out.header["Set-Cookie"])
	}
	h.want("session after logout", whoami(secReq{cookie: sess.cookie}), http.StatusUnauthorized, "unauthorized")
	h.want("session after logout, changing", h.do(secReq{method: http.MethodPost, path: api.Prefix + "/tokens", cookie: sess.cookie, csrf: sess.csrf,
		body: []byte(`{"name":"after-logout","role":"admin"}`)}), http.StatusUnauthorized, "unauthorized")
	h.want("logout after logout", h.do(secReq{method: http.MethodDelete, path: api.Prefix + "/session", cookie: sess.cookie, csrf: sess.csrf}), http.StatusUnauthorized, "unauthorized")

	// A deleted user's token and session; a user of the same name made
	// again does not bring them back.
	secCreateUser(t, admin, "leaver", secOperatorPassword, auth.RoleOperator)
	leaver := r.client()
	if _, err := leaver.Login(ctx, "leaver", secOperatorPassword); err != nil {
		t.Fatal(err)
	}
	leaverSess := h.login("leaver", secOperatorPassword)
	ltok := secCreateToken(t, leaver, api.NewToken{Name: "leaver-script", Role: auth.RoleOperator})
	h.want("leaver's token", whoami(secReq{authz: "Bearer " + ltok.Secret}), http.StatusOK, "")
	if err := admin.Do(ctx, http.MethodDelete, api.Prefix+"/users/leaver", nil, nil); err != nil {
		t.Fatal(err)
	}
	h.want("deleted user's token", whoami(secReq{authz: "Bearer " + ltok.Secret}), http.StatusUnauthorized, "unauthorized")
	h.want("deleted user's session", whoami(secReq{cookie: leaverSess.cookie}), http.StatusUnauthorized, "unauthorized")
	secCreateUser(t, admin, "leaver", secOperatorPassword, auth.RoleOperator)
	h.want("deleted user's token, the user made again", whoami(secReq{authz: "Bearer " + ltok.Secret}), http.StatusUnauthorized, "unauthorized")
	h.want("deleted user's session, the user made again", whoami(secReq{cookie: leaverSess.cookie}), http.StatusUnauthorized, "unauthorized")

	// A password set by an admin ends the user's sessions.
	again := h.login("leaver", secOperatorPassword)
	if err := admin.Do(ctx, http.MethodPatch, api.Prefix+"/users/leaver", api.UserUpdate{Password: "another password for tests"}, nil); err != nil {
		t.Fatal(err)
	}
	h.want("session after its password was set", whoami(secReq{cookie: again.cookie}), http.StatusUnauthorized, "unauthorized")
}

// TestSecurityCSRF: a session's requests that change something need its
// CSRF token; reads do not; the cookie is locked down.
func TestSecurityCSRF(t *testing.T) {
	r := newApplianceRig(t, nil)
	h := newSecHarness(t, r)
	admin := r.admin()
	sess := h.login(r.cfg.AdminUser, adminPassword)
	other := h.login(r.cfg.AdminUser, adminPassword)

	var ck *http.Cookie
	for _, c := range (&http.Response{Header: sess.resp.header}).Cookies() {
		if c.Name == api.SessionCookie {
			ck = c
		}
	}
	switch {
	case ck == nil:
		t.Fatal("no session cookie")
	case !ck.HttpOnly, !ck.Secure, ck.SameSite != http.SameSiteStrictMode, ck.Path != "/":
		t.Errorf("session cookie %q: want HttpOnly, Secure, SameSite=Strict, Path=/", sess.resp.header["Set-Cookie"])
	case ck.Domain != "":
		t.Errorf("session cookie %q has a Domain", sess.resp.header["Set-Cookie"])
	}
	if bytes.Contains(sess.resp.body, []byte(sess.cookie)) {
		t.Error("the login's body shows the session cookie, which scripts must not read")
	}

	// A login does not adopt a session cookie it is sent (session
	// fixation): it makes a new one, and the one sent stays unknown.
	chosen := secRandomKey()
	fixed := h.do(secReq{method: http.MethodPost, path: api.Prefix + "/sessions", cookie: chosen, body: secLoginBody(r.cfg.AdminUser, adminPassword)})
	h.want("login with a cookie chosen beforehand", fixed, http.StatusCreated, "")
	for _, c := range (&http.Response{Header: fixed.header}).Cookies() {
		if c.Name == api.SessionCookie && c.Value == chosen {
			t.Error("the login kept the session cookie it was sent")
		}
	}
	h.want("the cookie chosen beforehand", h.do(secReq{method: http.MethodGet, path: api.Prefix + "/session", cookie: chosen}), http.StatusUnauthorized, "unauthorized")

	before := secSnapshot(t, admin)
	auditBefore := len(secAudit(t, admin))
	wrong := map[string]string{
		"no CSRF token":                   "",
		"a wrong CSRF token":              secRandomKey(),
		"another session's CSRF token":    other.csrf,
		"the cookie as CSRF token":        sess.cookie,
		"the CSRF token with a byte more": sess.csrf + "A",
	}
	for _, rt := range r.ap.Routes() {
		if rt.Method == http.MethodGet || secPolicy[rt.Method+" "+rt.Path] == accPublic {
			continue
		}
		path := secFill(rt.Path, "x", "0123456789abcdef")
		for name, csrf := range wrong {
			resp := h.do(secReq{method: rt.Method, path: path, cookie: sess.cookie, csrf: csrf, body: []byte(`{}`)})
			e := h.want(rt.Method+" "+path+" with "+name, resp, http.StatusForbidden, "forbidden")
			if e.Error != "" && !strings.Contains(e.Error, api.CSRFHeader) {
				t.Errorf("%s %s with %s: %q does not name the header", rt.Method, path, name, e.Error)
			}
		}
		// A CSRF token in the query, or as a cookie, is no header.
		resp := h.do(secReq{method: rt.Method, path: path + "?csrf_token=" + url.QueryEscape(sess.csrf), cookie: sess.cookie + "; " + api.CSRFHeader + "=" + sess.csrf, body: []byte(`{}`)})
		h.want(rt.Method+" "+path+" with the CSRF token in the query and a cookie", resp, http.StatusForbidden, "forbidden")
	}
	secSameState(t, before, secSnapshot(t, admin))
	if n := len(secAudit(t, admin)); n != auditBefore {
		t.Errorf("the audit log grew from %d to %d entries", auditBefore, n)
	}

	// Reads need no CSRF token.
	for _, path := range []string{"/session", "/users", "/tokens", "/jobs", "/audit"} {
		h.want("GET "+path+" without CSRF token", h.do(secReq{method: http.MethodGet, path: api.Prefix + path, cookie: sess.cookie}), http.StatusOK, "")
	}
	// With the right one, changes go through; the session survived all
	// of the above.
	resp := h.do(secReq{method: http.MethodPost, path: api.Prefix + "/tokens", cookie: sess.cookie, csrf: sess.csrf,
		body: []byte(`{"name":"with-csrf","role":"operator"}`)})
	h.want("POST /tokens with the CSRF token", resp, http.StatusCreated, "")
	h.want("logout with the CSRF token", h.do(secReq{method: http.MethodDelete, path: api.Prefix + "/session", cookie: sess.cookie, csrf: sess.csrf}), http.StatusNoContent, "")
	// The other session is still there, and its token is still its own.
	h.want("the other session", h.do(secReq{method: http.MethodGet, path: api.Prefix + "/session", cookie: other.cookie}), http.StatusOK, "")
}

// secBodyRoutes returns the routes with a request body, with the schema
// of the body, from the served OpenAPI document.
func secBodyRoutes(t *testing.T, r *applianceRig, c *api.Client) map[api.Route]*openapi3.Schema {
	t.Helper()
	doc := r.openAPI(c)
	out := map[api.Route]*openapi3.Schema{}
	for _, rt := range r.ap.Routes() {
		item := doc.Paths.Value(rt.Path)
		if item == nil {
			t.Fatalf("%s is not in the OpenAPI document", rt.Path)
		}
		op := item.GetOperation(rt.Method)
		if op == nil || op.RequestBody == nil || op.RequestBody.Value == nil {
			continue
		}
		mt := op.RequestBody.Value.Content.Get("application/json")
		if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
			t.Fatalf("%s %s: a request body that is not JSON", rt.Method, rt.Path)
		}
		out[rt] = mt.Schema.Value
	}
	return out
}

// secWrongType returns a JSON value that is not of schema's type.
func secWrongType(s *openapi3.Schema) (string, bool) {
	switch {
	case s == nil || s.Type == nil:
		return "", false
	case s.Type.Is("string"):
		return `12345`, true
	case s.Type.Is("integer"), s.Type.Is("number"):
		return `"12"`, true
	case s.Type.Is("boolean"):
		return `"true"`, true
	case s.Type.Is("array"):
		return `{"a":1}`, true
	case s.Type.Is("object"):
		return `["a"]`, true
	}
	return "", false
}

// TestSecurityAbuseMalformedBodies: every route with a request body
// refuses bodies that are too large, not JSON, not one JSON value, not of
// its shape, or not declared JSON, and creates nothing.
func TestSecurityAbuseMalformedBodies(t *testing.T) {
	r := newApplianceRig(t, nil)
	h := newSecHarness(t, r)
	ctx := context.Background()
	admin := r.admin()
	secCreateUser(t, admin, "op", secOperatorPassword, auth.RoleOperator)
	if err := admin.Do(ctx, http.MethodPost, api.Prefix+"/jobs",
		jobs.Job{Name: "sec-job", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily"}, nil); err != nil {
		t.Fatal(err)
	}
	tok := secCreateToken(t, admin, api.NewToken{Name: "bodies", Role: auth.RoleAdmin})
	sess := h.login(r.cfg.AdminUser, adminPassword)
	bodyRoutes := secBodyRoutes(t, r, admin)
	if len(bodyRoutes) < 10 {
		t.Fatalf("only %d routes with a request body: %v", len(bodyRoutes), bodyRoutes)
	}
	before := secSnapshot(t, admin)
	auditBefore := len(secAudit(t, admin))
	failuresBefore := secMetric(t, admin, "bulwark_login_failures_total")

	huge := strings.Repeat("a", 1<<20)
	nested := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	type badBody struct {
		name   string
		body   string
		ctype  string
		status int
		code   string
	}
	cases := []badBody{
		{"a string over 1 MiB", `{"name":"` + huge + `"}`, "", http.StatusRequestEntityTooLarge, "too_large"},
		{"an object padded over 1 MiB", `{}` + strings.Repeat(" ", 1<<20+1), "", http.StatusRequestEntityTooLarge, "too_large"},
		{"an unknown field over 1 MiB", `{"` + huge + `":1}`, "", http.StatusRequestEntityTooLarge, "too_large"},
		{"empty body", "", "", http.StatusBadRequest, "bad_request"},
		{"whitespace", " \n\t ", "", http.StatusBadRequest, "bad_request"},
		{"truncated", `{"name":`, "", http.StatusBadRequest, "bad_request"},
		{"not JSON", `name=x&role=admin`, "", http.StatusBadRequest, "bad_request"},
		{"single quotes", `{'name':'x'}`, "", http.StatusBadRequest, "bad_request"},
		{"trailing comma", `{"name":"x",}`, "", http.StatusBadRequest, "bad_request"},
		{"a byte-order mark", "\ufeff{}", "", http.StatusBadRequest, "bad_request"},
		{"deeply nested", nested, "", http.StatusBadRequest, "bad_request"},
		{"unknown field", `{"bogus_field":1}`, "", http.StatusBadRequest, "bad_request"},
		{"unknown field beside known ones", `{"name":"x","role":"admin","is_admin":true}`, "", http.StatusBadRequest, "bad_request"},
		{"two JSON values", `{}{}`, "", http.StatusBadRequest, "bad_request"},
		{"two JSON values, spaced", "{} \n {\"name\":\"x\"}", "", http.StatusBadRequest, "bad_request"},
		{"a value then garbage", `{} x`, "", http.StatusBadRequest, "bad_request"},
		{"an array", `[{}]`, "", http.StatusBadRequest, "bad_request"},
		{"a string", `"x"`, "", http.StatusBadRequest, "bad_request"},
		{"a number", `42`, "", http.StatusBadRequest, "bad_request"},
		{"a boolean", `true`, "", http.StatusBadRequest, "bad_request"},
		{"text/plain", `{}`, "text/plain", http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"form", `{}`, "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"multipart", `{}`, "multipart/form-data; boundary=x", http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"JSON-like type", `{}`, "application/json-patch+json", http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"malformed type", `{}`, "application/json; charset", http.StatusUnsupportedMediaType, "unsupported_media_type"},
	}
	names := map[string]string{"users": "op", "jobs": "sec-job", "vcenters": "x"}
	for rt, schema := range bodyRoutes {
		kind := strings.Split(strings.TrimPrefix(rt.Path, api.Prefix+"/"), "/")[0]
		path := secFill(rt.Path, names[kind], "0123456789abcdef")
		rcases := slices.Clone(cases)
		// A value of the wrong type in each field.
		for _, field := range slices.Sorted(func(yield func(string) bool) {
			for k := range schema.Properties {
				if !yield(k) {
					return
				}
			}
		}) {
			if v, ok := secWrongType(schema.Properties[field].Value); ok {
				rcases = append(rcases, badBody{"field " + field + " of the wrong type", `{"` + field + `":` + v + `}`, "", http.StatusBadRequest, "bad_request"})
			}
		}
		for _, c := range rcases {
			for _, cred := range []struct {
				name string
				q    secReq
			}{
				{"token", secReq{authz: "Bearer " + tok.Secret}},
				{"session", secReq{cookie: sess.cookie, csrf: sess.csrf}},
			} {
				q := cred.q
				q.method, q.path, q.body, q.ctype = rt.Method, path, []byte(c.body), c.ctype
				what := fmt.Sprintf("%s %s, %s, with a %s", rt.Method, path, c.name, cred.name)
				resp, err := h.try(q)
				if err != nil {
					t.Errorf("%s: %v", what, err)
					continue
				}
				h.want(what, resp, c.status, c.code)
			}
		}
	}
	secSameState(t, before, secSnapshot(t, admin))
	if n := len(secAudit(t, admin)); n != auditBefore {
		t.Errorf("the audit log grew from %d to %d entries", auditBefore, n)
	}
	if n := secMetric(t, admin, "bulwark_login_failures_total"); n != failuresBefore {
		t.Errorf("%v login failures counted, want none", n-failuresBefore)
	}
	h.want("the session after it all", h.do(secReq{method: http.MethodGet, path: api.Prefix + "/session", cookie: sess.cookie}), http.StatusOK, "")
}

// secTree lists the files and directories under root, except under skip.
func secTree(t *testing.T, root string, skip ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if slices.Contains(skip, p) {
			return fs.SkipDir
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// secTraversalValues are path parameters that try to reach outside what
// they name: as sent, escapes included.
var secTraversalValues = []string{
	"..", ".", "%2e%2e", "%2E%2E", "%2e", ".%2e", "%2e.",
	"..%2f..%2fetc%2fpasswd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd", "..%2f..%2f..%2f..%2ftmp%2fbulwark-pwned",
	"a%2fb", "%2f", "%2fetc%2fpasswd", "%5c", "..%5c..%5cwindows", "a%5cb",
	"%00", "a%00b", "%0a", "a%0d%0aSet-Cookie:%20x=y", "%7f",
	"%252e%252e", "%252f", "..;", "%c0%ae%c0%ae", "%ff", "~root", "*", "%20",
	strings.Repeat("a", 300), strings.Repeat("0", 300), strings.Repeat("%2e", 100),
	"0123456789abcdef%2f..", "sec-job%2f..%2f..%2fusers", "sec-job%00",
}

// secGuarded reports whether the path guard of the API must refuse the
// path parameter v, as sent: whatever the handler, it may name nothing
// outside what it is meant to.
func secGuarded(t *testing.T, v string) bool {
	t.Helper()
	d, err := url.PathUnescape(v)
	if err != nil {
		t.Fatalf("%q: %v", v, err)
	}
	return d == "." || len(d) > 256 || strings.ContainsAny(d, "/\\") || strings.Contains(d, "..") ||
		strings.ContainsFunc(d, func(c rune) bool { return c < 0x20 || c == 0x7f })
}

// TestSecurityPathTraversal sends path parameters and query parameters
// that try to escape to every route that has one: each is refused with
// 400 or 404, never served and never a server error, no file appears
// outside the state and the store, and the server stays up.
func TestSecurityPathTraversal(t *testing.T) {
	r := newApplianceRig(t, nil)
	h := newSecHarness(t, r)
	ctx := context.Background()
	admin := r.admin()
	secCreateUser(t, admin, "op", secOperatorPassword, auth.RoleOperator)
	if err := admin.Do(ctx, http.MethodPost, api.Prefix+"/jobs",
		jobs.Job{Name: "sec-job", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily"}, nil); err != nil {
		t.Fatal(err)
	}
	tok := secCreateToken(t, admin, api.NewToken{Name: "traversal", Role: auth.RoleAdmin})
	bearer := "Bearer " + tok.Secret
	bodyRoutes := secBodyRoutes(t, r, admin)
	root := filepath.Dir(r.cfg.State)
	treeBefore := secTree(t, filepath.Dir(root), r.cfg.State, r.cfg.Store.Path)
	before := secSnapshot(t, admin)

	// An answer is a refusal; or, for a literal dot segment, which the
	// client sends as such but no handler ever sees, the mux's redirect to
	// the path with the dot segments resolved (RFC 3986, 5.2.4), which is
	// another route, authorized on its own, and not followed here.
	check := func(what string, q secReq, guarded bool) {
		t.Helper()
		resp := h.do(q)
		switch resp.status {
		case http.StatusBadRequest:
			return
		case http.StatusNotFound:
			// The mux may route no handler at all, which is as good; but a
			// handler must not see what the guard refuses.
			if e, err := resp.apiError(); err != nil || guarded && !strings.HasPrefix(e.Error, "no such endpoint") {
				t.Errorf("%s: %s, want 400 from the path guard", what, resp)
			}
			return
		case http.StatusTemporaryRedirect:
			u, err := url.Parse(q.path)
			if err != nil {
				t.Fatal(err)
			}
			dotted := slices.ContainsFunc(strings.Split(u.EscapedPath(), "/"), func(s string) bool { return s == "." || s == ".." })
			loc := resp.header.Get("Location")
			clean := path.Clean(u.EscapedPath())
			if dotted && (loc == clean || loc == clean+"/") {
				return
			}
			t.Errorf("%s: redirected to %q", what, loc)
		default:
			t.Errorf("%s: %s, want 400 or 404", what, resp)
		}
	}
	n := 0
	for _, rt := range r.ap.Routes() {
		if !strings.Contains(rt.Path, "{") {
			continue
		}
		var body []byte
		if _, ok := bodyRoutes[rt]; ok {
			body = []byte(`{"role":"operator"}`) // a change, if a user were found
			if !strings.HasPrefix(rt.Path, api.Prefix+"/users/") {
				body = []byte(`{}`)
			}
		}
		for _, v := range secTraversalValues {
			p := strings.NewReplacer("{name}", v, "{id}", v, "{volume}", v).Replace(rt.Path)
			check(rt.Method+" "+p, secReq{method: rt.Method, path: p, authz: bearer, body: body}, secGuarded(t, v))
			n++
		}
	}
	if n < 400 {
		t.Errorf("only %d requests tried", n)
	}

	// Query parameters: numbers must be numbers; names are compared, never
	// looked up as paths, so a filter that matches nothing is an empty
	// list.
	for _, q := range []string{
		"/points?limit=-1", "/points?limit=abc", "/points?limit=1e3", "/points?limit=99999999999999999999", "/points?limit=%00",
		"/tasks?limit=-1", "/tasks?limit=abc",
		"/audit?limit=-1", "/audit?limit=abc", "/audit?before=-1", "/audit?before=xyz", "/audit?before=..%2f..",
		"/events?after=xyz", "/events?after=-1", "/events?after=..%2f..", "/events?after=1e3",
		"/jobs/sec-job/runs?limit=-1", "/jobs/sec-job/runs?limit=abc",
	} {
		resp := h.do(secReq{method: http.MethodGet, path: api.Prefix + q, authz: bearer})
		h.want("GET "+q, resp, http.StatusBadRequest, "bad_request")
	}
	for _, q := range []string{
		"/points?vm=../..", "/points?vm=..%2f..%2fetc%2fpasswd", "/points?vm=%00", "/points?job=../..", "/points?job=%5c..",
		"/vms?vm=../..", "/tasks?kind=../..&state=..%2f..", "/tasks?state=%00",
	} {
		resp := h.do(secReq{method: http.MethodGet, path: api.Prefix + q, authz: bearer})
		var list []json.RawMessage
		if resp.status != http.StatusOK || json.Unmarshal(resp.body, &list) != nil || len(list) != 0 {
			t.Errorf("GET %s: %s, want an empty list", q, resp)
		}
	}

	// Path-like values in bodies: time zones name files of the zone
	// database.
	for _, zone := range []string{"../../../../etc/passwd", "/etc/passwd", "Europe/../../../etc/passwd",
		`..\..\windows\win.ini`, "Europe/Berlin\x00", "../../../../tmp/bulwark-pwned"} {
		z, _ := json.Marshal(zone)
		for _, body := range []string{
			`"selection":{"folders":["/DC0/vm"]},"schedule":"@daily","time_zone":` + string(z) + `}`,
			`"selection":{"folders":["/DC0/vm"]},"schedule":"@daily","retention":{"last":1,"location":` + string(z) + `}}`,
		} {
			for _, m := range []struct{ method, path, name string }{
				{http.MethodPost, "/jobs", `"name":"tz-job",`},
				{http.MethodPut, "/jobs/sec-job", ""},
			} {
				resp := h.do(secReq{method: m.method, path: api.Prefix + m.path, authz: bearer, body: []byte("{" + m.name + body)})
				if e := h.want(m.method+" "+m.path+" with time zone "+string(z), resp, http.StatusBadRequest, "bad_request"); e.Error != "" && !strings.Contains(e.Error, "time zone") {
					t.Errorf("%s %s with time zone %s: %q, want the time zone refused", m.method, m.path, z, e.Error)
				}
			}
		}
	}

	secSameState(t, before, secSnapshot(t, admin))
	if after := secTree(t, filepath.Dir(root), r.cfg.State, r.cfg.Store.Path); !slices.Equal(treeBefore, after) {
		t.Errorf("files changed outside the state and the store:\nbefore %q\nafter  %q", treeBefore, after)
	}
	for _, p := range []string{"/tmp/bulwark-pwned", filepath.Join(root, "etc"), filepath.Join(filepath.Dir(root), "etc")} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it not to exist", p, err)
		}
	}
	h.want("/healthz after it all", h.do(secReq{method: http.MethodGet, path: "/healthz"}), http.StatusOK, "")
	h.want("the token after it all", h.do(secReq{method: http.MethodGet, path: api.Prefix + "/users", authz: bearer}), http.StatusOK, "")
}

// TestSecurityLoginRateLimit: five wrong passwords lock a user name out,
// so that the sixth attempt fails even with the right password, from any
// address; the failures are audited and counted.
func TestSecurityLoginRateLimit(t *testing.T) {
	r := newApplianceRig(t, nil)
	h := newSecHarness(t, r)
	admin := r.admin() // logged in before any failure
	secCreateUser(t, admin, "victim", secVictimPassword, auth.RoleOperator)
	attacker := newSecHarnessFrom(t, r, "127.0.0.2")
	elsewhere := newSecHarnessFrom(t, r, "127.0.0.3")
	failuresBefore := secMetric(t, admin, "bulwark_login_failures_total")
	auditBefore := secAudit(t, admin)
	var lastSeq uint64
	if len(auditBefore) > 0 {
		lastSeq = auditBefore[0].Seq
	}
	login := func(from *secHarness, user, password string) secResp {
		return from.do(secReq{method: http.MethodPost, path: api.Prefix + "/sessions", body: secLoginBody(user, password)})
	}

	// An unknown user and a wrong password look the same.
	prober := newSecHarnessFrom(t, r, "127.0.0.4")
	unknown := login(prober, "nobody-"+secRandomKey()[:8], "some password or other")
	wrongPw := login(prober, r.cfg.AdminUser, "some password or other")
	h.want("an unknown user", unknown, http.StatusUnauthorized, "unauthorized")
	h.want("a wrong password", wrongPw, http.StatusUnauthorized, "unauthorized")
	if !bytes.Equal(unknown.body, wrongPw.body) {
		t.Errorf("an unknown user and a wrong password differ: %s and %s", unknown.body, wrongPw.body)
	}
	probed := 2

	for i := range 5 {
		resp := login(attacker, "victim", fmt.Sprintf("wrong password number %d", i))
		h.want(fmt.Sprintf("wrong password %d", i+1), resp, http.StatusUnauthorized, "unauthorized")
	}
	refused := 0
	for _, c := range []struct {
		name string
		from *secHarness
		user string
		pw   string
	}{
		{"the right password from another address", elsewhere, "victim", secVictimPassword},
		{"the right password from the same address", attacker, "victim", secVictimPassword},
		// The address is locked out too, for any user.
		{"the admin's password from the attacker's address", attacker, r.cfg.AdminUser, adminPassword},
	} {
		resp := login(c.from, c.user, c.pw)
		refused++
		h.want(c.name, resp, http.StatusTooManyRequests, "rate_limited")
		ra, err := strconv.Atoi(resp.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 31 {
			t.Errorf("%s: Retry-After %q, want 1 to 31 seconds", c.name, resp.header.Get("Retry-After"))
		}
		if resp.header.Get("Set-Cookie") != "" {
			t.Errorf("%s: a cookie was set", c.name)
		}
	}
	// Another user from another address is not locked out.
	h.login(r.cfg.AdminUser, adminPassword)
	// A wrong password while locked out is refused, and counted, too.
	if resp := login(elsewhere, "victim", "yet another wrong one"); resp.status != http.StatusTooManyRequests {
		t.Errorf("a wrong password while locked out: %s, want 429", resp)
	} else {
		refused++
	}

	failed, denied := 0, 0
	for _, e := range secAudit(t, admin) {
		if e.Seq <= lastSeq || e.Action != "login" {
			continue
		}
		switch {
		case e.Actor == "victim" && e.Outcome == auth.OutcomeFailed && e.Remote == "127.0.0.2":
			failed++
		case e.Outcome == auth.OutcomeDenied:
			denied++
		}
	}
	if failed != 5 || denied != refused {
		t.Errorf("audit log: %d failed and %d denied logins, want 5 and %d", failed, denied, refused)
	}
	if n := secMetric(t, admin, "bulwark_login_failures_total") - failuresBefore; n != float64(probed+5+refused) {
		t.Errorf("bulwark_login_failures_total grew by %v, want %d", n, probed+5+refused)
	}
}
