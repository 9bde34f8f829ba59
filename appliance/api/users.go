package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/auth"
)

// LoginRequest logs a user in.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// SessionInfo says who is calling. CSRFToken, for sessions, must be sent
// back in the X-CSRF-Token header of every request that changes something.
type SessionInfo struct {
	User      string    `json:"user"`
	Role      auth.Role `json:"role"`
	Via       string    `json:"via"` // "session" or "token"
	VM        string    `json:"vm,omitempty"`
	CSRFToken string    `json:"csrf_token,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
}

// PasswordChange changes one's own password.
type PasswordChange struct {
	Current string `json:"current"`
	New     string `json:"new"`
}

// NewUser creates a user.
type NewUser struct {
	Name     string    `json:"name"`
	Password string    `json:"password"`
	Role     auth.Role `json:"role"`
}

// UserUpdate changes what it sets of a user.
type UserUpdate struct {
	Role     auth.Role `json:"role,omitempty"`
	Password string    `json:"password,omitempty"`
}

// NewToken creates an API token. TTL is a duration such as "720h"; a
// file-restore token needs one, and a VM.
type NewToken struct {
	Name string    `json:"name"`
	Role auth.Role `json:"role"`
	VM   string    `json:"vm,omitempty"`
	TTL  string    `json:"ttl,omitempty"`
}

// CreatedToken is a new token with its secret, which is not shown again.
type CreatedToken struct {
	auth.Token
	Secret string `json:"secret"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req LoginRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	u, err := s.d.Auth.Authenticate(r.Context(), req.Username, req.Password, c.remote)
	if err != nil {
		s.d.Metrics.LoginFailures.Inc()
		var limited *auth.RateLimitError
		outcome := "failed"
		if errors.As(err, &limited) {
			outcome = "denied"
		}
		// Only an existing user's name is recorded: another may be a
		// password or a token typed into the wrong field, or a megabyte of
		// junk, and the audit log keeps what it is given for good.
		actor, detail := req.Username, err.Error()
		if _, uerr := s.d.Auth.User(req.Username); uerr != nil {
			actor, detail = "", "no such user (the name given is not recorded)"
			if limited != nil {
				detail = limited.Error() + "; " + detail
			}
		}
		s.audit(c, actor, "login", "", outcome, detail)
		if errors.Is(err, auth.ErrBadCredentials) {
			return nil, errUnauthorized("wrong user name or password")
		}
		return nil, err
	}
	token, sess, err := s.d.Auth.NewSession(u, c.remote)
	if err != nil {
		return nil, err
	}
	s.audit(c, u.Name, "login", "", "ok", "")
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	return SessionInfo{User: u.Name, Role: u.Role, Via: "session", CSRFToken: sess.CSRF, Expires: sess.Expires}, nil
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return SessionInfo{User: c.who.User, Role: c.who.Role, Via: c.who.Via, VM: c.who.VM, CSRFToken: c.who.CSRF}, nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	if c.who.Via != "session" {
		return nil, errBadRequest("logging out ends a session; revoke a token at DELETE %s/tokens/{id}", Prefix)
	}
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, errBadRequest("no session cookie")
	}
	if err := s.d.Auth.EndSession(ck.Value); err != nil && !errors.Is(err, auth.ErrNotFound) {
		return nil, err
	}
	s.audit(c, "", "logout", "", "ok", "")
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return nil, nil
}

func (s *Server) changeOwnPassword(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req PasswordChange
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if c.who.Via != "session" {
		return nil, errForbidden("a password is changed from a session, not with a token")
	}
	if _, err := s.d.Auth.Authenticate(r.Context(), c.who.User, req.Current, c.remote); err != nil {
		s.audit(c, "", "change password", c.who.User, "failed", err.Error())
		if errors.Is(err, auth.ErrBadCredentials) {
			return nil, errForbidden("the current password is wrong")
		}
		return nil, err
	}
	if err := s.d.Auth.SetPassword(r.Context(), c.who.User, req.New); err != nil {
		return nil, err
	}
	s.audit(c, "", "change password", c.who.User, "ok", "")
	return nil, nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return s.d.Auth.Users()
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req NewUser
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	u, err := s.d.Auth.CreateUser(r.Context(), req.Name, req.Password, req.Role)
	if err != nil {
		return nil, err
	}
	s.audit(c, "", "create user", u.Name, "ok", "role "+string(u.Role))
	return u, nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return s.d.Auth.User(r.PathValue("name"))
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	name := r.PathValue("name")
	var req UserUpdate
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Role == "" && req.Password == "" {
		return nil, errBadRequest("nothing to change: give a role or a password")
	}
	if _, err := s.d.Auth.User(name); err != nil {
		return nil, err
	}
	if req.Role != "" {
		if err := s.d.Auth.SetRole(name, req.Role); err != nil {
			return nil, err
		}
		s.audit(c, "", "set role", name, "ok", "role "+string(req.Role))
	}
	if req.Password != "" {
		if err := s.d.Auth.SetPassword(r.Context(), name, req.Password); err != nil {
			return nil, err
		}
		s.audit(c, "", "set password", name, "ok", "")
	}
	return s.d.Auth.User(name)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	name := r.PathValue("name")
	if err := s.d.Auth.DeleteUser(name); err != nil {
		return nil, err
	}
	s.audit(c, "", "delete user", name, "ok", "")
	return nil, nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	owner := c.who.User
	if c.who.Allows(auth.RoleAdmin) {
		owner = ""
	}
	return s.d.Auth.Tokens(owner)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req NewToken
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	spec := auth.TokenSpec{Name: req.Name, Role: req.Role, VM: req.VM}
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return nil, errBadRequest("ttl %q: %v", req.TTL, err)
		}
		spec.TTL = d
	}
	if c.who.Via == "token" && !c.who.Allows(auth.RoleAdmin) {
		// A leaked operator token must not be able to mint more of itself.
		return nil, errForbidden("operators create tokens from a session")
	}
	secret, t, err := s.d.Auth.CreateToken(c.who.User, spec)
	if err != nil {
		return nil, err
	}
	s.audit(c, "", "create token", t.ID, "ok", "role "+string(t.Role)+scopeNote(t.VM))
	return CreatedToken{Token: t, Secret: secret}, nil
}

func scopeNote(vm string) string {
	if vm == "" {
		return ""
	}
	return ", VM " + vm
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	id := r.PathValue("id")
	t, err := s.d.Auth.Token(id)
	if err != nil {
		return nil, err
	}
	if t.Owner != c.who.User && !c.who.Allows(auth.RoleAdmin) {
		// Not found rather than forbidden: others' token IDs stay unknown.
		return nil, errNotFound("token %s: not found", id)
	}
	if err := s.d.Auth.RevokeToken(id); err != nil {
		return nil, err
	}
	s.audit(c, "", "revoke token", id, "ok", "")
	return nil, nil
}

func (s *Server) auditLog(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	before, err := queryInt(r, "before", 0)
	if err != nil {
		return nil, err
	}
	limit, err := queryInt(r, "limit", 100)
	if err != nil {
		return nil, err
	}
	return s.d.Auth.AuditLog(uint64(before), int(limit))
}
