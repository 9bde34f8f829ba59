// Package api is the appliance's HTTPS API: JSON under /api/v1, described by
// an OpenAPI 3 document generated from the same route table that serves it,
// with authentication, roles, CSRF protection, audit and live events.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/events"
	"github.com/bulwarkbackup/bulwark/appliance/metrics"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// Prefix is where the API lives.
const Prefix = fileapi.Prefix

// SessionCookie is the name of the session cookie, and CSRFHeader the
// header that must repeat the session's CSRF token on every request that
// changes something.
const (
	SessionCookie = "bulwark_session"
	CSRFHeader    = "X-CSRF-Token"
)

// maxBody bounds a request body: no request of this API needs more.
const maxBody = 1 << 20

// VCenters is what the API needs of the appliance's vCenter connections.
type VCenters interface {
	// Client returns a connection to the stored vCenter called name.
	Client(ctx context.Context, name string) (*vsphere.Client, error)
	// Forget drops the connection to name, after its record changed.
	Forget(ctx context.Context, name string)
	// Test connects to v with password (or, if password is nil, the
	// password v's record gives) and returns the vCenter's instance UUID.
	Test(ctx context.Context, v jobs.VCenter, password []byte) (string, error)
	// Seal returns v keeping password sealed under the store's key.
	Seal(v jobs.VCenter, password []byte) jobs.VCenter
	// RestoreTarget returns the vCenter called name, or when name is
	// empty the one whose instance UUID is instance, to restore into.
	RestoreTarget(ctx context.Context, name, instance string) (*vsphere.RestoreTarget, error)
}

// Deps are the parts of the appliance that the API serves.
type Deps struct {
	Auth      *auth.Store
	State     *jobs.State
	Runner    *jobs.Runner
	Scheduler *jobs.Scheduler
	Store     *chunkstore.Store
	VCenters  VCenters
	Tasks     *tasks.Manager
	Hub       *events.Hub
	Metrics   *metrics.Metrics
	// Jobs follows the runner's runs; the runner reports to it.
	Jobs *JobTracker
	// Browse keeps the points being browsed open. If nil, New makes one
	// with the default options, which lives as long as RunContext.
	Browse *Browser

	// RunContext is the appliance's life: job runs that the API starts
	// belong to it, not to the request.
	RunContext context.Context
	// Version is reported by /healthz.
	Version string
	// Keepalive is how often the event stream sends a comment; 0 means
	// 15 s.
	Keepalive time.Duration
	Log       *slog.Logger
}

// Server serves the API.
type Server struct {
	d      Deps
	log    *slog.Logger
	routes []route
	doc    []byte // the OpenAPI document
	mux    *http.ServeMux

	biosMu sync.Mutex
	bios   map[string]string // BIOS UUID by point ID
}

// New returns a Server over d.
func New(d Deps) (*Server, error) {
	switch {
	case d.Auth == nil, d.State == nil, d.Runner == nil, d.Store == nil, d.VCenters == nil,
		d.Tasks == nil, d.Hub == nil, d.Metrics == nil, d.RunContext == nil:
		return nil, errors.New("new API server: a dependency is missing")
	}
	if d.Keepalive == 0 {
		d.Keepalive = 15 * time.Second
	}
	if d.Browse == nil {
		d.Browse = NewBrowser(d.Store, BrowseOptions{})
		context.AfterFunc(d.RunContext, d.Browse.Close)
	}
	s := &Server{d: d, log: d.Log, mux: http.NewServeMux(), bios: map[string]string{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.routes = s.table()
	doc, err := s.openAPI()
	if err != nil {
		return nil, fmt.Errorf("new API server: OpenAPI document: %w", err)
	}
	s.doc = doc
	for _, rt := range s.routes {
		pattern := rt.method + " " + rt.path
		s.mux.Handle(pattern, d.Metrics.Instrument(pattern, s.handler(rt)))
	}
	// Everything else under the API is a JSON 404, not the mux's text.
	s.mux.Handle(Prefix+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errNotFound("no such endpoint: %s %s", r.Method, r.URL.Path))
	}))
	return s, nil
}

// Handler returns the HTTP handler of the whole API, /healthz and /metrics
// included.
func (s *Server) Handler() http.Handler { return securityHeaders(s.mux) }

// A Route is one endpoint, as the OpenAPI document and the mux know it.
type Route struct{ Method, Path string }

// Routes lists the endpoints the server serves.
func (s *Server) Routes() []Route {
	out := make([]Route, len(s.routes))
	for i, rt := range s.routes {
		out[i] = Route{rt.method, rt.path}
	}
	return out
}

// OpenAPI returns the OpenAPI document.
func (s *Server) OpenAPI() []byte { return s.doc }

// access is who may call a route.
type access int

const (
	public   access = iota // anybody: /healthz and login only
	anyone                 // any authenticated principal, file-restore tokens included
	viewer                 // operators and admins, read-only
	operator               // operators and admins: run and restore
	admin                  // admins: users, settings, configuration, deletions
	vmScoped               // like anyone, but file-restore principals see their VM only
)

// A route is one endpoint of the table in routes.go.
type route struct {
	method, path string
	summary      string
	tag          string
	access       access
	status       int // on success; 0 means 200
	in           any // the request body's type, nil for none
	out          any // the response's type, nil for none
	query        []queryParam
	// stream marks endpoints that write their own response, such as the
	// event stream and /metrics.
	stream string // its content type
	do     func(w http.ResponseWriter, r *http.Request, c *call) (any, error)
}

type queryParam struct{ name, desc, typ string }

// A call is one request being served.
type call struct {
	who    auth.Principal
	remote string
}

func (s *Server) handler(rt route) http.Handler {
	params := pathParams(rt.path)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{remote: remoteIP(r)}
		if err := checkPathValues(r, params); err != nil {
			s.fail(w, r, err)
			return
		}
		if rt.access != public {
			who, err := s.authenticate(r)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if err := s.authorize(who, rt.access); err != nil {
				s.audit(c, who.User, "access "+rt.method+" "+rt.path, r.URL.Path, "denied", err.Error())
				s.fail(w, r, err)
				return
			}
			c.who = who
		}
		if rt.method != http.MethodGet {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		v, err := rt.do(w, r, c)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if rt.stream != "" {
			return
		}
		status := rt.status
		if status == 0 {
			status = http.StatusOK
		}
		if v == nil {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v)
	})
}

// authenticate finds who makes r: a bearer token, or a session cookie with,
// on requests that change something, its CSRF token.
func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
			return auth.Principal{}, errUnauthorized("malformed Authorization header: want \"Bearer <token>\"")
		}
		p, err := s.d.Auth.TokenPrincipal(strings.TrimSpace(secret))
		if err != nil {
			return auth.Principal{}, credentialError("token", err)
		}
		return p, nil
	}
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return auth.Principal{}, errUnauthorized("not logged in: log in at POST %s/sessions, or send a bearer token", Prefix)
	}
	p, err := s.d.Auth.SessionPrincipal(ck.Value)
	if err != nil {
		return auth.Principal{}, credentialError("session", err)
	}
	if !safeMethod(r.Method) && !constantTimeEqual(r.Header.Get(CSRFHeader), p.CSRF) {
		return auth.Principal{}, errForbidden("missing or wrong %s header: a session's requests that change something must repeat its CSRF token", CSRFHeader)
	}
	return p, nil
}

func credentialError(kind string, err error) error {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return errUnauthorized("%s expired", kind)
	case errors.Is(err, auth.ErrNotFound), errors.Is(err, auth.ErrInvalid):
		return errUnauthorized("unknown or revoked %s", kind)
	}
	return err
}

func (s *Server) authorize(p auth.Principal, a access) error {
	switch a {
	case anyone, vmScoped:
		return nil
	case viewer, operator:
		if p.Allows(auth.RoleOperator) {
			return nil
		}
		return errForbidden("role %s may not do this: operator or admin needed", p.Role)
	case admin:
		if p.Allows(auth.RoleAdmin) {
			return nil
		}
		return errForbidden("role %s may not do this: admin needed", p.Role)
	}
	return errForbidden("no access")
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// pathParams returns the names of the parameters in a route's pattern.
func pathParams(pattern string) []string {
	var names []string
	for _, seg := range strings.Split(pattern, "/") {
		if strings.HasPrefix(seg, "{") {
			names = append(names, strings.Trim(seg, "{}."))
		}
	}
	return names
}

// checkPathValues refuses path parameters that could name something
// outside what they are meant to: every handler's own validation comes
// after this, which holds for parameters yet to be added.
func checkPathValues(r *http.Request, params []string) error {
	for _, name := range params {
		v := r.PathValue(name)
		switch {
		case v == "", len(v) > 256, v == ".", v == "..",
			strings.ContainsAny(v, "/\\"), strings.Contains(v, ".."),
			strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 || c == 0x7f }):
			return errBadRequest("invalid %s %q", name, v)
		}
	}
	return nil
}

// remoteIP is the client's address without its port: the login limiter's
// key. The appliance is reached directly, so headers such as
// X-Forwarded-For, which a client sets at will, are not believed.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// securityHeaders sets what every response carries.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, Prefix) {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// audit records an action in the audit log, which never fails a request.
func (s *Server) audit(c *call, actor, action, target, outcome, detail string) {
	if actor == "" {
		actor = c.who.User
	}
	if c.who.Via == "token" && c.who.TokenID != "" && actor == c.who.User {
		actor += " (token " + c.who.TokenID + ")"
	}
	err := s.d.Auth.Audit(auth.AuditEntry{Actor: actor, Remote: c.remote, Action: action, Target: target, Outcome: outcome, Detail: detail})
	if err != nil {
		s.log.Error("cannot write the audit log", "action", action, "target", target, "err", err)
	}
}
