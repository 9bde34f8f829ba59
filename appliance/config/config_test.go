package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// minimal is the least a valid configuration holds.
const minimal = `store:
  path: /var/lib/bulwark/store
  password_env: BULWARK_PASSWORD
`

const vcenter = `vcenters:
  - name: vc1
    url: https://vcenter.example.com/sdk
    username: backup@vsphere.local
    password_env: VC1_PASSWORD
    thumbprint: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"
`

const smtp = `smtp:
  host: smtp.example.com
  username: bulwark
  password_env: SMTP_PASSWORD
  from: Bulwark <bulwark@example.com>
  to: [ops@example.com]
`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), "/etc/bulwark")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:     ":8443",
		Store:      Store{Path: "/var/lib/bulwark/store", PasswordEnv: "BULWARK_PASSWORD", Create: true},
		State:      "/var/lib/bulwark/state",
		AdminUser:  "admin",
		Runner:     Runner{Concurrency: 8, SnapshotsPerDatastore: 2, Transport: "http"},
		Log:        Log{Level: "info", Format: "json"},
		SessionTTL: Duration(12 * time.Hour),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", c, want)
	}
	cert, key := c.TLSFiles()
	if cert != "/var/lib/bulwark/state/tls/tls.crt" || key != "/var/lib/bulwark/state/tls/tls.key" {
		t.Errorf("TLSFiles() = %s, %s; want the self-signed files under the state directory", cert, key)
	}
}

func TestSMTPDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal+smtp), "")
	if err != nil {
		t.Fatal(err)
	}
	want := &SMTP{Host: "smtp.example.com", Port: 587, Username: "bulwark", PasswordEnv: "SMTP_PASSWORD",
		From: "Bulwark <bulwark@example.com>", To: []string{"ops@example.com"}, StartTLS: true,
		Notify: []string{"failed", "partial"}}
	if !reflect.DeepEqual(c.SMTP, want) {
		t.Errorf("smtp = %+v, want %+v", c.SMTP, want)
	}

	for _, doc := range []string{minimal + "smtp:\n", minimal + "smtp: null\n"} {
		c, err := Parse([]byte(doc), "")
		if err != nil {
			t.Fatal(err)
		}
		if c.SMTP != nil {
			t.Errorf("Parse(%q).SMTP = %+v, want nil", doc, c.SMTP)
		}
	}
}

func TestExplicitValues(t *testing.T) {
	doc := `listen: "127.0.0.1:9443"
tls:
  cert: /etc/bulwark/tls.crt
  key: /etc/bulwark/tls.key
  hosts: [backup.example.com, 192.0.2.7, "2001:db8::7"]
store:
  path: /srv/store
  password_file: /etc/bulwark/store.pass
  create: false
state: /srv/state
admin_user: root@example
` + vcenter + `  - name: vc2
    url: https://192.0.2.1:8443/sdk
    username: backup
    password_file: /etc/bulwark/vc2.pass
    insecure: true
runner:
  concurrency: 2
  snapshots_per_datastore: 1
  transport: hotadd
  appliance_vm: bulwark-01
smtp:
  host: 127.0.0.1
  port: 25
  from: bulwark@example.com
  to: [a@example.com, "B <b@example.com>"]
  starttls: false
  notify: []
log:
  level: debug
  format: text
session_ttl: 1h30m
`
	c, err := Parse([]byte(doc), "/etc/bulwark")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen: "127.0.0.1:9443",
		TLS: TLS{Cert: "/etc/bulwark/tls.crt", Key: "/etc/bulwark/tls.key",
			Hosts: []string{"backup.example.com", "192.0.2.7", "2001:db8::7"}},
		Store:     Store{Path: "/srv/store", PasswordFile: "/etc/bulwark/store.pass"},
		State:     "/srv/state",
		AdminUser: "root@example",
		VCenters: []VCenter{
			{Name: "vc1", URL: "https://vcenter.example.com/sdk", Username: "backup@vsphere.local",
				PasswordEnv: "VC1_PASSWORD", Thumbprint: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"},
			{Name: "vc2", URL: "https://192.0.2.1:8443/sdk", Username: "backup",
				PasswordFile: "/etc/bulwark/vc2.pass", Insecure: true},
		},
		Runner: Runner{Concurrency: 2, SnapshotsPerDatastore: 1, Transport: "hotadd", ApplianceVM: "bulwark-01"},
		SMTP: &SMTP{Host: "127.0.0.1", Port: 25, From: "bulwark@example.com",
			To: []string{"a@example.com", "B <b@example.com>"}, Notify: []string{}},
		Log:        Log{Level: "debug", Format: "text"},
		SessionTTL: Duration(90 * time.Minute),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", c, want)
	}
	if cert, key := c.TLSFiles(); cert != want.TLS.Cert || key != want.TLS.Key {
		t.Errorf("TLSFiles() = %s, %s; want the configured files", cert, key)
	}
}

func TestRelativePaths(t *testing.T) {
	doc := `tls:
  cert: tls/cert.pem
  key: /abs/key.pem
store:
  path: data/store
  password_file: store.pass
vcenters:
  - name: vc1
    url: https://vc/sdk
    username: u
    password_file: ../secrets/vc1
    insecure: true
smtp:
  host: localhost
  username: u
  password_file: smtp.pass
  from: a@example.com
  to: [b@example.com]
`
	c, err := Parse([]byte(doc), "/etc/bulwark")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ key, got, want string }{
		{"tls.cert", c.TLS.Cert, "/etc/bulwark/tls/cert.pem"},
		{"tls.key", c.TLS.Key, "/abs/key.pem"},
		{"store.path", c.Store.Path, "/etc/bulwark/data/store"},
		{"store.password_file", c.Store.PasswordFile, "/etc/bulwark/store.pass"},
		{"state", c.State, "/etc/bulwark/data/state"},
		{"vcenters[0].password_file", c.VCenters[0].PasswordFile, "/etc/secrets/vc1"},
		{"smtp.password_file", c.SMTP.PasswordFile, "/etc/bulwark/smtp.pass"},
	} {
		if p.got != p.want {
			t.Errorf("%s = %q, want %q", p.key, p.got, p.want)
		}
	}

	// Load takes them relative to the file, wherever the process runs.
	dir := t.TempDir()
	path := filepath.Join(dir, "bulwark.yaml")
	if err := os.WriteFile(path, []byte("store:\n  path: store\n  password_env: P\nstate: st\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	c, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "store"); c.Store.Path != want {
		t.Errorf("Load: store.path = %q, want %q", c.Store.Path, want)
	}
	if want := filepath.Join(dir, "st"); c.State != want {
		t.Errorf("Load: state = %q, want %q", c.State, want)
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"empty", "", "empty"},
		{"comments only", "# nothing\n", "empty"},
		{"not a mapping", "- a\n", "cannot unmarshal !!seq into config.Config"},
		{"syntax", "store: [\n", "line 1: did not find expected node content"},
		{"duplicate key", minimal + "store: {}\n", `mapping key "store" already defined at line 1`},
		{"listen no port", minimal + "listen: 0.0.0.0\n", `listen: "0.0.0.0": want host:port`},
		{"listen port too large", minimal + "listen: ':70000'\n", "listen: \":70000\": the port must be a number from 0 to 65535"},
		{"listen port range", minimal + "listen: ':65536'\n", "listen:"},
		{"listen port name", minimal + "listen: ':https'\n", "the port must be a number"},
		{"listen bad host", minimal + "listen: 'a b:8443'\n", "neither a host name nor an IP address"},
		{"cert without key", minimal + "tls:\n  cert: c.pem\n", "tls.key: required with tls.cert"},
		{"key without cert", minimal + "tls:\n  key: k.pem\n", "tls.cert: required with tls.key"},
		{"bad tls host", minimal + "tls:\n  hosts: [ok.example.com, 'bad host']\n", `tls.hosts[1]: "bad host" is neither`},
		{"no store path", "store:\n  password_env: P\n", "store.path: required"},
		{"no store password", "store:\n  path: /s\n", "store.password_file: required: set password_file or password_env"},
		{"two store passwords", "store:\n  path: /s\n  password_env: P\n  password_file: /p\n", "store.password_file: excludes password_env"},
		{"bad env name", "store:\n  path: /s\n  password_env: 1PASS\n", `store.password_env: "1PASS" is not a variable name`},
		{"env name with dash", "store:\n  path: /s\n  password_env: MY-PASS\n", "store.password_env:"},
		{"store not a mapping", "store: 5\n", "line 1: cannot unmarshal !!int `5` into config.Store"},
		{"create not a bool", "store:\n  path: /s\n  password_env: P\n  create: maybe\n", "line 4: cannot unmarshal !!str `maybe` into bool"},
		{"bad admin user", minimal + "admin_user: 'a b'\n", `admin_user: invalid user name "a b"`},
		{"empty admin user", minimal + "admin_user: ''\n", "admin_user: invalid user name"},
		{"vcenter bad name", minimal + strings.Replace(vcenter, "name: vc1", "name: -vc", 1), `vcenters[0].name: invalid name "-vc"`},
		{"vcenter long name", minimal + strings.Replace(vcenter, "name: vc1", "name: "+strings.Repeat("v", 65), 1), "vcenters[0].name: invalid name"},
		{"vcenter duplicate", minimal + vcenter + strings.TrimPrefix(vcenter, "vcenters:\n"), `vcenters[1].name: "vc1" is also the name of vcenters[0]`},
		{"vcenter credentials", minimal + strings.Replace(vcenter, "https://vcenter", "https://u:secret@vcenter", 1), "vcenters[0].url: must not contain credentials"},
		{"vcenter http", minimal + strings.Replace(vcenter, "https://", "http://", 1), "vcenters[0].url: \"http://vcenter.example.com/sdk\": want https://host[:port]/sdk"},
		{"vcenter bare host", minimal + strings.Replace(vcenter, "https://vcenter.example.com/sdk", "vcenter.example.com", 1), "vcenters[0].url:"},
		{"vcenter no url", minimal + strings.Replace(vcenter, "url: https://vcenter.example.com/sdk", "url: ''", 1), "vcenters[0].url: required"},
		{"vcenter no username", minimal + strings.Replace(vcenter, "username: backup@vsphere.local", "username: ' '", 1), "vcenters[0].username: required"},
		{"vcenter no password", minimal + strings.Replace(vcenter, "password_env: VC1_PASSWORD", "insecure: false", 1), "vcenters[0].password_file: required"},
		{"vcenter both passwords", minimal + strings.Replace(vcenter, "password_env: VC1_PASSWORD", "password_env: VC1_PASSWORD\n    password_file: /p", 1), "vcenters[0].password_file: excludes password_env"},
		{"vcenter short thumbprint", minimal + strings.Replace(vcenter, "AB:CD:EF:01:", "", 1), "vcenters[0].thumbprint: \"23:45"},
		{"vcenter thumbprint not hex", minimal + strings.Replace(vcenter, "AB:CD:EF:01:", "XY:CD:EF:01:", 1), "vcenters[0].thumbprint: \"XY:CD"},
		{"vcenter thumbprint and insecure", minimal + vcenter + "    insecure: true\n", "vcenters[0].thumbprint: excludes insecure: true"},
		{"vcenter no trust", minimal + strings.Replace(vcenter, `thumbprint: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"`, "insecure: false", 1), "vcenters[0].thumbprint: required: pin"},
		{"concurrency zero", minimal + "runner:\n  concurrency: 0\n", "runner.concurrency: 0: want at least 1"},
		{"snapshots zero", minimal + "runner:\n  snapshots_per_datastore: 0\n", "runner.snapshots_per_datastore: 0: want at least 1"},
		{"bad transport", minimal + "runner:\n  transport: nbd\n", `runner.transport: "nbd": want http or hotadd`},
		{"hotadd without vm", minimal + "runner:\n  transport: hotadd\n", "runner.appliance_vm: required with transport hotadd"},
		{"vm without hotadd", minimal + "runner:\n  appliance_vm: me\n", "runner.appliance_vm: only used with transport hotadd"},
		{"smtp empty", minimal + "smtp: {}\n", "smtp.host: required"},
		{"smtp host with port", minimal + strings.Replace(smtp, "host: smtp.example.com", "host: smtp.example.com:25", 1), "smtp.host:"},
		{"smtp port zero", minimal + smtp + "  port: 0\n", "smtp.port: 0: want 1 to 65535"},
		{"smtp port large", minimal + smtp + "  port: 65536\n", "smtp.port: 65536: want 1 to 65535"},
		{"smtp no password", minimal + strings.Replace(smtp, "  password_env: SMTP_PASSWORD\n", "", 1), "smtp.password_file: required"},
		{"smtp password without user", minimal + strings.Replace(smtp, "  username: bulwark\n", "", 1), "smtp.username: required with a password"},
		{"smtp clear password", minimal + smtp + "  starttls: false\n", "smtp.starttls: false would send the password to smtp.example.com in clear"},
		{"smtp bad from", minimal + strings.Replace(smtp, "Bulwark <bulwark@example.com>", "bulwark", 1), `smtp.from: "bulwark": mail: missing '@'`},
		{"smtp no from", minimal + strings.Replace(smtp, "  from: Bulwark <bulwark@example.com>\n", "", 1), "smtp.from: required"},
		{"smtp no to", minimal + strings.Replace(smtp, "  to: [ops@example.com]\n", "", 1), "smtp.to: required"},
		{"smtp bad to", minimal + strings.Replace(smtp, "[ops@example.com]", "[ops@example.com, 'a, b']", 1), "smtp.to[1]:"},
		{"smtp to header injection", minimal + strings.Replace(smtp, "[ops@example.com]", `["=?utf-8?q?a=0D=0Ab?= <a@example.com>"]`, 1), "smtp.to[0]: \"=?utf-8?q?a=0D=0Ab?= <a@example.com>\": line breaks are not allowed"},
		{"smtp bad notify", minimal + smtp + "  notify: [failed, fail]\n", `smtp.notify[1]: "fail": want one of success, warning, partial, failed, cancelled`},
		{"bad log level", minimal + "log:\n  level: verbose\n", `log.level: "verbose": want debug, info, warn or error`},
		{"bad log format", minimal + "log:\n  format: xml\n", `log.format: "xml": want json or text`},
		{"bad duration", minimal + "session_ttl: 12x\n", `line 4: invalid duration "12x"`},
		{"duration without unit", minimal + "session_ttl: 12\n", `line 4: invalid duration "12"`},
		{"duration not scalar", minimal + "session_ttl: [1h]\n", "line 4: want a duration"},
		{"zero duration", minimal + "session_ttl: 0s\n", "session_ttl: 0s: want a positive duration"},
		{"negative duration", minimal + "session_ttl: -1h\n", "session_ttl: -1h0m0s: want a positive duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "/etc/bulwark")
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error containing %q", c, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("Parse error = %q, want \"config: \" and %q", err, tc.want)
			}
		})
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	doc := minimal + strings.Replace(vcenter, "https://vcenter", "https://user:hunter2@vcenter", 1)
	_, err := Parse([]byte(doc), "")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Parse error = %v, want an error that does not show the password", err)
	}
	doc = minimal + strings.Replace(vcenter, "https://vcenter.example.com/sdk", "https://user:hunter2@vc%zz/sdk", 1)
	_, err = Parse([]byte(doc), "")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Parse error = %v, want an error that does not show the password", err)
	}
}

func TestAllProblemsReported(t *testing.T) {
	doc := "listen: nope\nstore:\n  password_env: P\nlog:\n  level: loud\n"
	_, err := Parse([]byte(doc), "")
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	for _, want := range []string{"listen:", "store.path: required", "log.level:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse error = %q, want it to contain %q", err, want)
		}
	}
}

func TestUnknownFields(t *testing.T) {
	doc := `listen: ":8443"
store:
  path: /s
  passwrd_env: P
  password_env: P
runner:
  concurency: 2
`
	path := filepath.Join(t.TempDir(), "bulwark.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{
		"config " + path + ": line 4: field passwrd_env not found in type config.Store",
		"line 7: field concurency not found in type config.Runner",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error = %q, want it to contain %q", err, want)
		}
	}
}

func TestMultipleDocuments(t *testing.T) {
	for _, doc := range []string{
		minimal + "---\n" + minimal,
		minimal + "---\n",
		"---\n" + minimal + "---\nlisten: ':1'\n",
	} {
		_, err := Parse([]byte(doc), "")
		if err == nil || !strings.Contains(err.Error(), "a second YAML document") {
			t.Errorf("Parse(%q) error = %v, want one about a second document", doc, err)
		}
	}
	// A single document may say so.
	if _, err := Parse([]byte("---\n"+minimal+"...\n"), ""); err != nil {
		t.Errorf("Parse of one marked document: %v", err)
	}
}

func TestSizeCap(t *testing.T) {
	pad := func(n int) []byte {
		b := []byte(minimal + "#")
		b = append(b, bytes.Repeat([]byte("x"), n-len(b)-1)...)
		return append(b, '\n')
	}
	if _, err := Parse(pad(MaxSize), ""); err != nil {
		t.Errorf("Parse of %d bytes: %v", MaxSize, err)
	}
	_, err := Parse(pad(MaxSize+1), "")
	if err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Errorf("Parse of %d bytes: error = %v, want one about the size", MaxSize+1, err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(path, pad(MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of %d bytes: error = %v, want one about the size", MaxSize+1, err)
	}
	if err := os.WriteFile(path, pad(MaxSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("Load of %d bytes: %v", MaxSize, err)
	}
}

func TestLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.yaml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%s) error = %v, want a not-exist error naming the file", path, err)
	}
}

func TestDurationRoundTrip(t *testing.T) {
	d := Duration(36 * time.Hour)
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
	}{d})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back.D != d || string(out) != "d: 36h0m0s\n" {
		t.Errorf("round trip of %s: %q, back %s", d, out, back.D)
	}
}

// TestSampleConfig keeps deploy/bulwark.yaml valid, smtp section included.
func TestSampleConfig(t *testing.T) {
	const sample = "../../deploy/bulwark.yaml"
	t.Setenv("BULWARK_PASSWORD", "store secret")
	t.Setenv("VC1_PASSWORD", "vc secret")
	t.Setenv("SMTP_PASSWORD", "smtp secret")
	c, err := Load(sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.VCenters) == 0 || c.SMTP != nil {
		t.Errorf("sample: %d vCenters, smtp %+v; want a vCenter and the smtp section commented out", len(c.VCenters), c.SMTP)
	}
	if _, err := c.Store.Password(); err != nil {
		t.Error(err)
	}
	for _, vc := range c.VCenters {
		if _, err := vc.Password(); err != nil {
			t.Error(err)
		}
	}

	// The smtp section is commented out; with the comment marks taken
	// away it must be valid too.
	data, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	for line := range strings.Lines(string(data)) {
		switch {
		case strings.HasPrefix(line, "# smtp:"):
			in = true
		case strings.TrimSpace(line) == "":
			in = false
		}
		if in {
			line = strings.TrimPrefix(line, "# ")
		}
		lines = append(lines, line)
	}
	c, err = Parse([]byte(strings.Join(lines, "")), "/etc/bulwark")
	if err != nil {
		t.Fatalf("sample with smtp: %v", err)
	}
	if c.SMTP == nil {
		t.Fatal("sample with smtp: no smtp section")
	}
	if p, err := c.SMTP.Password(); err != nil || string(p) != "smtp secret" {
		t.Errorf("sample smtp password = %q, %v", p, err)
	}
}

// TestHostileInputs feeds files that would cost the decoder much time or
// memory without the checks in front of it; each must be refused with a
// short error.
func TestHostileInputs(t *testing.T) {
	dupKeys := "vcenters:\n" + strings.Repeat("- {"+strings.Repeat("a: 0, ", 60)+"}\n", 2000)
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"deep nesting", strings.Repeat("[", MaxSize-10), "exceeded max depth"},
		{"many keys", strings.Repeat("store: {}\n", MaxSize/11), "line 1: 95325 keys in one mapping: no section has more than 64"},
		{"repeated keys", dupKeys, `line 2: mapping key "a" already defined at line 2`},
		{"many problems", minimal + "vcenters:\n" + strings.Repeat("- {}\n", 1000), "and 4980 more problems"},
		{"many unknown fields", "vcenters:\n" + strings.Repeat("- {x: 1}\n", 1000), "and 980 more problems"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %.300v, want it to contain %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "\n"); n > maxErrors {
				t.Errorf("the error has %d lines, want at most %d", n+1, maxErrors+1)
			}
		})
	}
}
