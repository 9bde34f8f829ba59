// Package config reads the appliance's YAML configuration file, the one
// that `bulwark serve --config FILE` starts from.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxSize is the largest configuration file Load and Parse accept. Real
// files are a few KiB; the cap keeps a wrong path (a disk image, /dev/zero)
// from being read into memory.
const MaxSize = 1 << 20

// Config is the configuration of one appliance.
type Config struct {
	// Listen is the host:port of the HTTPS server.
	Listen string `yaml:"listen"`
	TLS    TLS    `yaml:"tls"`
	Store  Store  `yaml:"store"`
	// State is the directory of the appliance's own state: its database,
	// its self-signed certificate. It defaults to "state" next to the
	// store.
	State string `yaml:"state"`
	// AdminUser is the name of the administrator account.
	AdminUser string    `yaml:"admin_user"`
	VCenters  []VCenter `yaml:"vcenters"`
	Runner    Runner    `yaml:"runner"`
	// SMTP is nil when no mail is to be sent.
	SMTP *SMTP `yaml:"smtp"`
	Log  Log   `yaml:"log"`
	// SessionTTL is how long a login lasts.
	SessionTTL Duration `yaml:"session_ttl"`
}

// TLS names the certificate of the HTTPS server. When Cert and Key are
// both empty the appliance makes a self-signed certificate on first start.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Hosts are names and addresses the self-signed certificate is made
	// for, besides localhost and the machine's host name.
	Hosts []string `yaml:"hosts"`
}

// Store is the backup store the appliance writes to.
type Store struct {
	Path string `yaml:"path"`
	// Exactly one of PasswordFile and PasswordEnv says where the store
	// password is.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Create initialises the store on first start if Path holds none.
	Create bool `yaml:"create"`
}

// VCenter is a vCenter the appliance backs up VMs from.
type VCenter struct {
	Name     string `yaml:"name"`
	URL      string `yaml:"url"`
	Username string `yaml:"username"`
	// Exactly one of PasswordFile and PasswordEnv says where the password
	// is.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Exactly one of Thumbprint and Insecure is set: trusting a vCenter's
	// certificate is decided once, on purpose, never by a first connection.
	Thumbprint string `yaml:"thumbprint"`
	Insecure   bool   `yaml:"insecure"`
}

// Runner tunes the job runner.
type Runner struct {
	// Concurrency is how many VMs are backed up at once.
	Concurrency int `yaml:"concurrency"`
	// SnapshotsPerDatastore caps the snapshots open at once on one
	// datastore, since each one slows the datastore's other VMs.
	SnapshotsPerDatastore int `yaml:"snapshots_per_datastore"`
	// Transport is how disks are read: "http" or "hotadd".
	Transport string `yaml:"transport"`
	// ApplianceVM is the appliance's own VM, which hot-add attaches disks
	// to. It is required with transport hotadd.
	ApplianceVM string `yaml:"appliance_vm"`
}

// SMTP is the mail relay that run results are sent through.
type SMTP struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// Username, if set, makes the mailer log in with AUTH PLAIN; then
	// exactly one of PasswordFile and PasswordEnv is set.
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	// StartTLS encrypts the connection. Turning it off is meant for
	// relays on localhost; a password is never sent in clear elsewhere.
	StartTLS bool `yaml:"starttls"`
	// Notify lists the run results that are mailed: success, warning,
	// partial, failed, cancelled.
	Notify []string `yaml:"notify"`
}

// Log configures the appliance's log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// Handler returns a slog handler writing to w at l's level and in l's
// format. l must be valid.
func (l Log) Handler(w io.Writer) slog.Handler {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // valid levels parse; anything else stays info
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "text" {
		return slog.NewTextHandler(w, opts)
	}
	return slog.NewJSONHandler(w, opts)
}

// Duration is a time.Duration written in YAML as Go writes durations:
// "12h", "90m", "1h30m".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "want a duration such as 12h or 90m")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return typeError(n, fmt.Sprintf("invalid duration %q: want a number and a unit (h, m, s), such as 12h or 90m", n.Value))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// typeError reports a bad value in the form the decoder uses for its own,
// so that it is listed with them, by line.
func typeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}

// defaults returns the configuration that a file overrides.
func defaults() *Config {
	return &Config{
		Listen:     ":8443",
		Store:      Store{Create: true},
		AdminUser:  "admin",
		Runner:     Runner{Concurrency: 8, SnapshotsPerDatastore: 2, Transport: "http"},
		SMTP:       &SMTP{Port: 587, StartTLS: true, Notify: []string{"failed", "partial"}},
		Log:        Log{Level: "info", Format: "json"},
		SessionTTL: Duration(12 * time.Hour),
	}
}

// Load reads, completes and validates the configuration file at path.
// Relative paths in it are taken relative to the file's directory.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := parse(data, dir)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes, completes and validates a configuration. Relative paths
// in it are taken relative to dir; dir "" leaves them relative to the
// working directory.
func Parse(data []byte, dir string) (*Config, error) {
	c, err := parse(data, dir)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

func parse(data []byte, dir string) (*Config, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes: is this the configuration file?", MaxSize)
	}
	c, err := decode(data)
	if err != nil {
		return nil, err
	}
	c.resolve(dir)
	if c.State == "" && c.Store.Path != "" {
		c.State = filepath.Join(filepath.Dir(c.Store.Path), "state")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// maxKeys bounds the keys of one mapping. The largest section has a
// dozen; the bound keeps the decoder's duplicate-key check, which is
// quadratic, cheap on any file.
const maxKeys = 64

// maxErrors bounds the problems an error lists: a broken file can have
// thousands, and the first few say what is wrong.
const maxErrors = 20

// decode decodes data over the defaults, refusing unknown fields and
// further documents.
func decode(data []byte) (c *Config, err error) {
	// A parser bug must not take the appliance down on a malformed file:
	// it is reported like any other error in the file.
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, errors.New("empty: no YAML document")
	case err != nil:
		return nil, yamlError(err)
	}
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(err)
	default:
		return nil, fmt.Errorf("line %d: a second YAML document: the file must hold one", extra.Line)
	}
	if err := checkMappings(&doc); err != nil {
		return nil, err
	}

	// Only a Decoder refuses unknown fields, so the document is decoded
	// again from the text rather than from doc.
	c = defaults()
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return nil, yamlError(err)
	}

	// The defaults of the smtp section are filled in before decoding,
	// so whether the file has one shows only in the document itself.
	var present struct {
		SMTP yaml.Node `yaml:"smtp"`
	}
	if err := doc.Decode(&present); err != nil {
		return nil, yamlError(err)
	}
	if present.SMTP.Kind == 0 {
		c.SMTP = nil
	}
	return c, nil
}

// checkMappings refuses mappings with more than maxKeys keys, and reports
// the first key repeated in a mapping, with the decoder's rule for
// repeats: the same kind of node and the same value. The decoder would
// report every pair of repeats, which in a large file is more than memory
// holds.
func checkMappings(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		if len(n.Content)/2 > maxKeys {
			return fmt.Errorf("line %d: %d keys in one mapping: no section has more than %d", n.Line, len(n.Content)/2, maxKeys)
		}
		type key struct {
			kind  yaml.Kind
			value string
		}
		seen := make(map[key]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if line, dup := seen[key{k.Kind, k.Value}]; dup {
				return fmt.Errorf("line %d: mapping key %q already defined at line %d", k.Line, k.Value, line)
			}
			seen[key{k.Kind, k.Value}] = k.Line
		}
	}
	// Aliases are not followed: their anchors are checked where they are.
	for _, c := range n.Content {
		if err := checkMappings(c); err != nil {
			return err
		}
	}
	return nil
}

// yamlError drops the decoder's "yaml:" prefix, since the caller names the
// file, and lists each of several errors on its own.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, len(te.Errors))
		for i, e := range te.Errors {
			errs[i] = errors.New(e)
		}
		return joinErrors(errs)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// joinErrors joins the first maxErrors of errs and says how many more
// there are.
func joinErrors(errs []error) error {
	if len(errs) > maxErrors {
		more := fmt.Errorf("and %d more problems", len(errs)-maxErrors)
		errs = append(errs[:maxErrors:maxErrors], more)
	}
	return errors.Join(errs...)
}

// resolve makes the relative paths of c relative to dir.
func (c *Config) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && dir != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.TLS.Cert)
	abs(&c.TLS.Key)
	abs(&c.Store.Path)
	abs(&c.Store.PasswordFile)
	abs(&c.State)
	for i := range c.VCenters {
		abs(&c.VCenters[i].PasswordFile)
	}
	if c.SMTP != nil {
		abs(&c.SMTP.PasswordFile)
	}
}

// TLSFiles returns the certificate and key files of the HTTPS server:
// those configured, or when there are none, those of the self-signed
// certificate in the state directory.
func (c *Config) TLSFiles() (cert, key string) {
	if c.TLS.Cert != "" || c.TLS.Key != "" {
		return c.TLS.Cert, c.TLS.Key
	}
	dir := filepath.Join(c.State, "tls")
	return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}
