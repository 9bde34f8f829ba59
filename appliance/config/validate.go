package config

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/bulwarkbackup/bulwark/jobs"
)

var (
	namePattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envPattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	hostnamePattern = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$`)
)

// results are the run results that can be mailed.
var results = []string{"success", "warning", "partial", "failed", "cancelled"}

// Validate reports every problem in c, each prefixed with the path of the
// key at fault, such as "vcenters[1].thumbprint". It does not look at the
// files and environment variables c names: they may be provided later.
func (c *Config) Validate() error {
	var v validator
	if err := checkHostPort(c.Listen); err != nil {
		v.add("listen", err)
	}
	c.TLS.validate(&v)
	c.Store.validate(&v)
	if c.State == "" {
		v.add("state", errors.New("required"))
	}
	if !userPattern.MatchString(c.AdminUser) {
		v.add("admin_user", fmt.Errorf("invalid user name %q: want up to 64 letters, digits, '.', '_', '@' and '-', starting with a letter or digit", c.AdminUser))
	}
	seen := make(map[string]int, len(c.VCenters))
	for i, vc := range c.VCenters {
		key := fmt.Sprintf("vcenters[%d]", i)
		if j, dup := seen[vc.Name]; dup && vc.Name != "" {
			v.add(key+".name", fmt.Errorf("%q is also the name of vcenters[%d]", vc.Name, j))
		} else {
			seen[vc.Name] = i
		}
		vc.validate(&v, key)
	}
	c.Runner.validate(&v)
	if c.SMTP != nil {
		c.SMTP.validate(&v)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", fmt.Errorf("%q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		v.add("log.format", fmt.Errorf("%q: want json or text", c.Log.Format))
	}
	if c.SessionTTL <= 0 {
		v.add("session_ttl", fmt.Errorf("%s: want a positive duration such as 12h", c.SessionTTL))
	}
	return v.err()
}

func (t TLS) validate(v *validator) {
	switch {
	case t.Cert == "" && t.Key != "":
		v.add("tls.cert", errors.New("required with tls.key (or leave both empty for a self-signed certificate)"))
	case t.Cert != "" && t.Key == "":
		v.add("tls.key", errors.New("required with tls.cert (or leave both empty for a self-signed certificate)"))
	}
	for i, h := range t.Hosts {
		if net.ParseIP(h) == nil && !hostnamePattern.MatchString(h) {
			v.add(fmt.Sprintf("tls.hosts[%d]", i), fmt.Errorf("%q is neither a host name nor an IP address", h))
		}
	}
}

func (s Store) validate(v *validator) {
	if s.Path == "" {
		v.add("store.path", errors.New("required"))
	}
	passwordSource(v, "store", s.PasswordFile, s.PasswordEnv)
}

func (vc VCenter) validate(v *validator, key string) {
	if !namePattern.MatchString(vc.Name) {
		v.add(key+".name", fmt.Errorf("invalid name %q: want up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit", vc.Name))
	}
	if err := checkVCenterURL(vc.URL); err != nil {
		v.add(key+".url", err)
	}
	if strings.TrimSpace(vc.Username) == "" {
		v.add(key+".username", errors.New("required"))
	}
	passwordSource(v, key, vc.PasswordFile, vc.PasswordEnv)
	switch {
	case vc.Thumbprint != "" && vc.Insecure:
		v.add(key+".thumbprint", errors.New("excludes insecure: true; pin the certificate or accept any, not both"))
	case vc.Thumbprint != "":
		if !jobs.IsThumbprint(vc.Thumbprint) {
			v.add(key+".thumbprint", fmt.Errorf("%q: want the SHA-1 or SHA-256 fingerprint of the vCenter certificate in hex", vc.Thumbprint))
		}
	case !vc.Insecure:
		v.add(key+".thumbprint", errors.New("required: pin the vCenter certificate's fingerprint, or set insecure: true to accept any certificate"))
	}
}

func (r Runner) validate(v *validator) {
	if r.Concurrency < 1 {
		v.add("runner.concurrency", fmt.Errorf("%d: want at least 1", r.Concurrency))
	}
	if r.SnapshotsPerDatastore < 1 {
		v.add("runner.snapshots_per_datastore", fmt.Errorf("%d: want at least 1", r.SnapshotsPerDatastore))
	}
	switch r.Transport {
	case "http":
		if r.ApplianceVM != "" {
			v.add("runner.appliance_vm", errors.New("only used with transport hotadd"))
		}
	case "hotadd":
		if strings.TrimSpace(r.ApplianceVM) == "" {
			v.add("runner.appliance_vm", errors.New("required with transport hotadd: the VM the disks are attached to"))
		}
	default:
		v.add("runner.transport", fmt.Errorf("%q: want http or hotadd", r.Transport))
	}
}

func (s SMTP) validate(v *validator) {
	switch {
	case s.Host == "":
		v.add("smtp.host", errors.New("required"))
	case strings.ContainsAny(s.Host, ":/ ") && net.ParseIP(s.Host) == nil:
		v.add("smtp.host", fmt.Errorf("%q: want a host name or IP address, with the port in smtp.port", s.Host))
	}
	if s.Port < 1 || s.Port > 65535 {
		v.add("smtp.port", fmt.Errorf("%d: want 1 to 65535", s.Port))
	}
	if s.Username != "" {
		passwordSource(v, "smtp", s.PasswordFile, s.PasswordEnv)
		if !s.StartTLS && !isLocalhost(s.Host) {
			v.add("smtp.starttls", fmt.Errorf("false would send the password to %s in clear: turn it off only for a relay on localhost", s.Host))
		}
	} else if s.PasswordFile != "" || s.PasswordEnv != "" {
		v.add("smtp.username", errors.New("required with a password"))
	}
	if err := checkAddress(s.From); err != nil {
		v.add("smtp.from", err)
	}
	if len(s.To) == 0 {
		v.add("smtp.to", errors.New("required: at least one address"))
	}
	for i, to := range s.To {
		if err := checkAddress(to); err != nil {
			v.add(fmt.Sprintf("smtp.to[%d]", i), err)
		}
	}
	for i, n := range s.Notify {
		if !slices.Contains(results, n) {
			v.add(fmt.Sprintf("smtp.notify[%d]", i), fmt.Errorf("%q: want one of %s", n, strings.Join(results, ", ")))
		}
	}
}

// isLocalhost reports whether host names the local machine, the one place
// a password may be sent in clear. The mailer applies the same rule.
func isLocalhost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// passwordSource checks that exactly one of file and env is given.
func passwordSource(v *validator, key, file, env string) {
	switch {
	case file != "" && env != "":
		v.add(key+".password_file", errors.New("excludes password_env: give one"))
	case file == "" && env == "":
		v.add(key+".password_file", errors.New("required: set password_file or password_env"))
	case env != "" && !envPattern.MatchString(env):
		v.add(key+".password_env", fmt.Errorf("%q is not a variable name: want letters, digits and '_', not starting with a digit", env))
	}
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: want host:port, such as :8443 or 0.0.0.0:8443", s)
	}
	// Port 0 picks a free port, which tests and demos use.
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", s)
	}
	if host != "" && net.ParseIP(host) == nil && !hostnamePattern.MatchString(host) {
		return fmt.Errorf("%q: %q is neither a host name nor an IP address", s, host)
	}
	return nil
}

func checkVCenterURL(raw string) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.User != nil {
		return errors.New("must not contain credentials: use username and password_file or password_env")
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want https://host[:port]/sdk", raw)
	}
	return nil
}

func checkAddress(s string) error {
	if s == "" {
		return errors.New("required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	// Header fields are built from the address; a line break in it would
	// start a header of the sender's choosing.
	if strings.ContainsAny(a.Address, "\r\n") || strings.ContainsAny(a.Name, "\r\n") {
		return fmt.Errorf("%q: line breaks are not allowed", s)
	}
	return nil
}

// validator collects the problems of a configuration.
type validator struct{ errs []error }

func (v *validator) add(key string, err error) {
	v.errs = append(v.errs, fmt.Errorf("%s: %w", key, err))
}

func (v *validator) err() error { return joinErrors(v.errs) }
