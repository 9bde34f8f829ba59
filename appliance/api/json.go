package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// Error is the body of every error response.
type Error = fileapi.Error

// httpError is an error that knows its status.
type httpError struct {
	status int
	code   string
	msg    string
	header http.Header
}

func (e *httpError) Error() string { return e.msg }

func newError(status int, code, format string, a ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

func errBadRequest(f string, a ...any) error {
	return newError(http.StatusBadRequest, "bad_request", f, a...)
}
func errUnauthorized(f string, a ...any) error {
	e := newError(http.StatusUnauthorized, "unauthorized", f, a...)
	e.header = http.Header{"Www-Authenticate": {`Bearer realm="bulwark"`}}
	return e
}
func errForbidden(f string, a ...any) error {
	return newError(http.StatusForbidden, "forbidden", f, a...)
}
func errNotFound(f string, a ...any) error {
	return newError(http.StatusNotFound, "not_found", f, a...)
}
func errConflict(f string, a ...any) error { return newError(http.StatusConflict, "conflict", f, a...) }

// classify maps the errors of the layers below to statuses; what it does
// not know is an internal error, logged and shown: every caller of the API
// is authenticated, and an operator needs the cause (a full disk, a
// damaged pack) more than it needs hiding.
func classify(err error) *httpError {
	var he *httpError
	var tooLarge *http.MaxBytesError
	var limited *auth.RateLimitError
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &tooLarge):
		return newError(http.StatusRequestEntityTooLarge, "too_large", "request body larger than %d bytes", tooLarge.Limit)
	case errors.As(err, &limited):
		e := newError(http.StatusTooManyRequests, "rate_limited", "too many failed logins: try again in %v", limited.RetryAfter.Round(1e9))
		e.header = http.Header{"Retry-After": {strconv.Itoa(int(limited.RetryAfter.Seconds()) + 1)}}
		return e
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, auth.ErrNotFound), errors.Is(err, tasks.ErrNotFound):
		return newError(http.StatusNotFound, "not_found", "%s", err)
	case errors.Is(err, auth.ErrExists), errors.Is(err, jobs.ErrInUse), errors.Is(err, jobs.ErrAlreadyRunning),
		errors.Is(err, auth.ErrLastAdmin), errors.Is(err, tasks.ErrBusy), errors.Is(err, tasks.ErrFinished):
		return newError(http.StatusConflict, "conflict", "%s", err)
	case errors.Is(err, auth.ErrInvalid), errors.Is(err, auth.ErrWeakPassword):
		return newError(http.StatusBadRequest, "bad_request", "%s", err)
	case errors.Is(err, tasks.ErrShuttingDown):
		return newError(http.StatusServiceUnavailable, "unavailable", "%s", err)
	}
	return nil
}

// fail writes err as the response, with the status its kind calls for.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	he := classify(err)
	if he == nil {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		he = newError(http.StatusInternalServerError, "internal", "%s", err)
	}
	for k, v := range he.header {
		w.Header()[k] = v
	}
	writeJSON(w, he.status, Error{Error: he.msg, Code: he.code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(Error{Error: "cannot encode the response: " + err.Error(), Code: "internal"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decode reads r's JSON body into v: exactly one JSON value of v's shape,
// no unknown fields, within maxBody.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "content type %q: want application/json", ct)
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooLarge):
			return err
		case errors.Is(err, io.EOF):
			return errBadRequest("empty request body: want a JSON object")
		case errors.As(err, &syntax):
			return errBadRequest("malformed JSON at byte %d: %v", syntax.Offset, err)
		case errors.As(err, &typ):
			return errBadRequest("JSON field %q: want %v, not %s", typ.Field, typ.Type, typ.Value)
		}
		return errBadRequest("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return errBadRequest("unexpected data after the JSON value")
	}
	return nil
}

func constantTimeEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
