package vsphere

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/sim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	testUser     = "backup@vsphere.local"
	testPassword = "S3cr3t-Pa55word-never-logged"

	// msgRelogin is what the client logs after logging in again.
	msgRelogin = "logged in to vCenter again"
)

// logBuffer collects the text log of a test; the simulator and the client
// write from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLogger returns a debug logger whose output the test can inspect, and
// checks at the end of the test that the password never reached it.
func newLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	b := new(logBuffer)
	t.Cleanup(func() {
		if strings.Contains(b.String(), testPassword) {
			t.Errorf("the password appears in the log:\n%s", b)
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// newSim starts a vCenter simulator over TLS that accepts only testUser with
// testPassword.
func newSim(t *testing.T, configure func(*simulator.Model)) (*simulator.Model, *simulator.Server) {
	t.Helper()
	m := simulator.VPX()
	if configure != nil {
		configure(m)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Remove)
	m.Service.TLS = new(tls.Config)
	m.Service.Listen = &url.URL{User: url.UserPassword(testUser, testPassword)}
	s := m.Service.NewServer()
	t.Cleanup(s.Close)
	return m, s
}

// simConfig returns a Config for the simulator that pins its certificate.
func simConfig(s *simulator.Server) Config {
	u := *s.URL
	u.User = nil
	return Config{
		URL:        u.String(),
		Username:   testUser,
		Password:   testPassword,
		Thumbprint: soap.ThumbprintSHA256(s.Certificate()),
	}
}

func connect(t *testing.T, cfg Config, log *slog.Logger) *Client {
	t.Helper()
	c, err := Connect(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// adminClient is a second, independent session on the simulator, standing in
// for an administrator in the vSphere Client.
func adminClient(t *testing.T, s *simulator.Server) *govmomi.Client {
	t.Helper()
	ctx := context.Background()
	ac, err := govmomi.NewClient(ctx, s.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ac.Logout(context.Background()) })
	return ac
}

func sessionKey(t *testing.T, c *Client) string {
	t.Helper()
	us, err := session.NewManager(c.VIM()).UserSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if us == nil {
		t.Fatal("not logged in")
	}
	return us.Key
}

func sessionActive(t *testing.T, ac *govmomi.Client, key string) bool {
	t.Helper()
	res, err := methods.SessionIsActive(context.Background(), ac.Client, &types.SessionIsActive{
		This:      *ac.ServiceContent.SessionManager,
		SessionID: key,
		UserName:  testUser,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Returnval
}

// eventually polls cond until it holds; the deadline only bounds a test that
// is going to fail anyway.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnectPinnedThumbprint(t *testing.T) {
	_, s := newSim(t, nil)
	cert := s.Certificate()
	sha256 := soap.ThumbprintSHA256(cert)
	ac := adminClient(t, s)

	for name, tp := range map[string]string{
		"sha1":              soap.ThumbprintSHA1(cert),
		"sha256":            sha256,
		"sha256 lower bare": strings.ToLower(strings.ReplaceAll(sha256, ":", "")),
	} {
		t.Run(name, func(t *testing.T) {
			log, _ := newLogger(t)
			cfg := simConfig(s)
			cfg.Thumbprint = tp
			c := connect(t, cfg, log)

			want := ac.ServiceContent.About.InstanceUuid
			if got := c.InstanceUUID(); got == "" || got != want {
				t.Errorf("InstanceUUID = %q, want %q", got, want)
			}
			if got := c.URL(); got != cfg.URL || strings.Contains(got, "@") {
				t.Errorf("URL = %q, want %q", got, cfg.URL)
			}
			if _, err := methods.GetCurrentTime(context.Background(), c.VIM()); err != nil {
				t.Errorf("call after Connect: %v", err)
			}
		})
	}
}

func TestConnectWrongThumbprint(t *testing.T) {
	_, s := newSim(t, nil)
	log, _ := newLogger(t)
	cfg := simConfig(s)
	wrong := strings.Repeat("AB:", 31) + "AB"
	cfg.Thumbprint = wrong

	_, err := Connect(context.Background(), cfg, log)
	if err == nil {
		t.Fatal("Connect with a wrong thumbprint succeeded")
	}
	var ce *CertificateError
	if !errors.As(err, &ce) {
		t.Fatalf("error is not a *CertificateError: %v", err)
	}
	actual := soap.ThumbprintSHA256(s.Certificate())
	if ce.Expected != wrong || ce.SHA256 != actual || ce.SHA1 != soap.ThumbprintSHA1(s.Certificate()) {
		t.Errorf("CertificateError = %+v, want expected %s and actual %s", ce, wrong, actual)
	}
	for _, want := range []string{wrong, actual, "does not match"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestConnectUntrustedCertificate(t *testing.T) {
	_, s := newSim(t, nil)
	log, _ := newLogger(t)
	cfg := simConfig(s)
	cfg.Thumbprint = ""

	_, err := Connect(context.Background(), cfg, log)
	if err == nil {
		t.Fatal("Connect to a self-signed server without thumbprint or insecure succeeded")
	}
	var ce *CertificateError
	if !errors.As(err, &ce) || ce.Expected != "" || ce.Err == nil {
		t.Fatalf("error is not a *CertificateError from verification: %#v", err)
	}
	for _, want := range []string{"--thumbprint", soap.ThumbprintSHA256(s.Certificate()), "--insecure"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestConnectInsecure(t *testing.T) {
	_, s := newSim(t, nil)
	log, _ := newLogger(t)
	cfg := simConfig(s)
	cfg.Thumbprint = ""
	cfg.Insecure = true
	c := connect(t, cfg, log)
	if _, err := methods.GetCurrentTime(context.Background(), c.VIM()); err != nil {
		t.Fatal(err)
	}
}

func TestConnectBareHost(t *testing.T) {
	_, s := newSim(t, nil)
	log, _ := newLogger(t)
	cfg := simConfig(s)
	cfg.URL = s.URL.Host // host:port, no scheme, no path
	c := connect(t, cfg, log)
	if want := "https://" + s.URL.Host + "/sdk"; c.URL() != want {
		t.Errorf("URL = %q, want %q", c.URL(), want)
	}
}

func TestConnectRefusesESXi(t *testing.T) {
	m := simulator.ESX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Remove)
	m.Service.TLS = new(tls.Config)
	m.Service.Listen = &url.URL{User: url.UserPassword(testUser, testPassword)}
	s := m.Service.NewServer()
	t.Cleanup(s.Close)
	log, _ := newLogger(t)

	_, err := Connect(context.Background(), simConfig(s), log)
	if err == nil || !strings.Contains(err.Error(), "not a vCenter") {
		t.Fatalf("Connect to an ESXi host: %v, want an error saying it is not a vCenter", err)
	}
}

func TestConnectWrongPassword(t *testing.T) {
	_, s := newSim(t, nil)
	log, logs := newLogger(t)
	cfg := simConfig(s)
	cfg.Password = "Wr0ng-" + testPassword

	_, err := Connect(context.Background(), cfg, log)
	if err == nil {
		t.Fatal("Connect with a wrong password succeeded")
	}
	if !fault.Is(err, &types.InvalidLogin{}) {
		t.Errorf("error is not InvalidLogin: %v", err)
	}
	if !strings.Contains(err.Error(), "wrong user name or password") || !strings.Contains(err.Error(), testUser) {
		t.Errorf("error does not say the credentials were refused: %v", err)
	}
	if strings.Contains(err.Error(), cfg.Password) || strings.Contains(logs.String(), cfg.Password) {
		t.Errorf("the password leaked: error %q, log %q", err, logs)
	}
}

func TestConnectRejectsBadConfig(t *testing.T) {
	_, s := newSim(t, nil)
	good := simConfig(s)
	withCredentials := *s.URL // carries testUser:testPassword

	tests := map[string]func(*Config){
		"credentials in URL":      func(c *Config) { c.URL = withCredentials.String() },
		"plain http":              func(c *Config) { c.URL = "http://" + s.URL.Host + "/sdk" },
		"empty URL":               func(c *Config) { c.URL = "" },
		"unparsable URL":          func(c *Config) { c.URL = "https://" + testUser + ":" + testPassword + "@[::1%zz]/sdk" },
		"no user":                 func(c *Config) { c.Username = "" },
		"thumbprint and insecure": func(c *Config) { c.Insecure = true },
		"short thumbprint":        func(c *Config) { c.Thumbprint = "AA:BB" },
		"non-hex thumbprint":      func(c *Config) { c.Thumbprint = strings.Repeat("ZZ", 20) },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			log, logs := newLogger(t)
			cfg := good
			mutate(&cfg)
			c, err := Connect(context.Background(), cfg, log)
			if err == nil {
				_ = c.Close(context.Background())
				t.Fatal("Connect succeeded")
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("the password leaked into the error: %v", err)
			}
			if logs.String() != "" {
				t.Errorf("a refused configuration logged: %s", logs)
			}
		})
	}
}

func TestConfigDoesNotPrintPassword(t *testing.T) {
	cfg := Config{URL: "vc.example", Username: testUser, Password: testPassword}
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "cfg", cfg)
	if strings.Contains(b.String(), testPassword) || !strings.Contains(b.String(), testUser) {
		t.Errorf("slog prints %s", b.String())
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, cfg); strings.Contains(s, testPassword) || !strings.Contains(s, testUser) {
			t.Errorf("%s prints %s", verb, s)
		}
	}
}

func TestFetchThumbprint(t *testing.T) {
	_, s := newSim(t, nil)
	sha1, sha256, err := FetchThumbprint(context.Background(), s.URL.Host)
	if err != nil {
		t.Fatal(err)
	}
	if want := soap.ThumbprintSHA1(s.Certificate()); sha1 != want {
		t.Errorf("sha1 = %s, want %s", sha1, want)
	}
	if want := soap.ThumbprintSHA256(s.Certificate()); sha256 != want {
		t.Errorf("sha256 = %s, want %s", sha256, want)
	}
}

func TestNormalizeThumbprint(t *testing.T) {
	sha1 := "6A:1B:0C:2D:3E:4F:50:61:72:83:94:A5:B6:C7:D8:E9:FA:0B:1C:2D"
	for _, in := range []string{sha1, strings.ToLower(sha1), strings.ReplaceAll(sha1, ":", ""), " " + strings.ReplaceAll(sha1, ":", "-") + " "} {
		got, err := normalizeThumbprint(in)
		if err != nil || got != sha1 {
			t.Errorf("normalizeThumbprint(%q) = %q, %v; want %q", in, got, err, sha1)
		}
	}
	for _, in := range []string{"", "AA", sha1 + ":00", "not hex at all"} {
		if got, err := normalizeThumbprint(in); err == nil {
			t.Errorf("normalizeThumbprint(%q) = %q, want an error", in, got)
		}
	}
}

// terminate ends c's session the way an administrator would, from another
// session, and checks that it is gone.
func terminate(t *testing.T, ac *govmomi.Client, c *Client) string {
	t.Helper()
	key := sessionKey(t, c)
	if err := ac.SessionManager.TerminateSession(context.Background(), []string{key}); err != nil {
		t.Fatal(err)
	}
	if sessionActive(t, ac, key) {
		t.Fatal("session still active after TerminateSession")
	}
	return key
}

func TestReloginAfterTerminatedSession(t *testing.T) {
	_, s := newSim(t, nil)
	log, logs := newLogger(t)
	c := connect(t, simConfig(s), log)
	ac := adminClient(t, s)
	ctx := context.Background()

	if _, err := c.Inventory(ctx); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), msgRelogin); n != 0 {
		t.Fatalf("re-logged in %d times before the session was terminated", n)
	}

	old := terminate(t, ac, c)

	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatalf("Inventory after the session was terminated: %v", err)
	}
	if len(inv.VMs) == 0 {
		t.Error("Inventory after re-login lists no VMs")
	}
	if n := strings.Count(logs.String(), msgRelogin); n != 1 {
		t.Errorf("logged %d re-logins, want 1:\n%s", n, logs)
	}
	if key := sessionKey(t, c); key == old || !sessionActive(t, ac, key) {
		t.Errorf("session after re-login = %s (old %s), want a new active one", key, old)
	}
}

func TestReloginWhenPropertiesComeBackMissing(t *testing.T) {
	// vcsim answers an unauthenticated RetrieveProperties with every
	// property missing for NotAuthenticated instead of a fault.
	m, s := newSim(t, nil)
	log, logs := newLogger(t)
	c := connect(t, simConfig(s), log)
	ac := adminClient(t, s)
	vm := m.Map().Any("VirtualMachine").(*simulator.VirtualMachine)

	terminate(t, ac, c)

	var got mo.VirtualMachine
	err := property.DefaultCollector(c.VIM()).RetrieveOne(context.Background(), vm.Reference(), []string{"name"}, &got)
	if err != nil {
		t.Fatalf("RetrieveOne after the session was terminated: %v", err)
	}
	if got.Name != vm.Name {
		t.Errorf("name = %q, want %q", got.Name, vm.Name)
	}
	if n := strings.Count(logs.String(), msgRelogin); n != 1 {
		t.Errorf("logged %d re-logins, want 1", n)
	}
}

func TestReloginOnceForConcurrentCallers(t *testing.T) {
	_, s := newSim(t, nil)
	log, logs := newLogger(t)
	c := connect(t, simConfig(s), log)
	ac := adminClient(t, s)

	terminate(t, ac, c)

	const callers = 16
	errs := make(chan error, callers)
	var start sync.WaitGroup
	start.Add(1)
	for range callers {
		go func() {
			start.Wait()
			_, err := methods.GetCurrentTime(context.Background(), c.VIM())
			errs <- err
		}()
	}
	start.Done()
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("call after the session was terminated: %v", err)
		}
	}
	if n := strings.Count(logs.String(), msgRelogin); n != 1 {
		t.Errorf("logged %d re-logins for %d concurrent callers, want 1", n, callers)
	}
}

func TestReloginAfterIdleExpiry(t *testing.T) {
	_, s := newSim(t, nil)
	ac := adminClient(t, s)
	ctx := context.Background()
	// Applies to sessions created from now on.
	if err := sim25.SetSessionTimeout(ctx, ac.Client, time.Second); err != nil {
		t.Fatal(err)
	}
	log, logs := newLogger(t)
	cfg := simConfig(s)
	cfg.KeepAlive = -1
	c := connect(t, cfg, log)
	key := sessionKey(t, c)

	eventually(t, "the idle session to expire", func() bool { return !sessionActive(t, ac, key) })

	if _, err := c.Inventory(ctx); err != nil {
		t.Fatalf("Inventory after the session expired: %v", err)
	}
	if n := strings.Count(logs.String(), msgRelogin); n != 1 {
		t.Errorf("logged %d re-logins, want 1", n)
	}
}

func TestKeepAlivePingsIdleSession(t *testing.T) {
	_, s := newSim(t, nil)
	ac := adminClient(t, s)
	log, logs := newLogger(t)
	cfg := simConfig(s)
	cfg.KeepAlive = 50 * time.Millisecond
	c := connect(t, cfg, log)
	key := sessionKey(t, c)

	lastActive := func() time.Time {
		var sm mo.SessionManager
		err := property.DefaultCollector(ac.Client).RetrieveOne(context.Background(),
			*ac.ServiceContent.SessionManager, []string{"sessionList"}, &sm)
		if err != nil {
			t.Fatal(err)
		}
		for _, us := range sm.SessionList {
			if us.Key == key {
				return us.LastActiveTime
			}
		}
		t.Fatalf("session %s not in the session list", key)
		return time.Time{}
	}

	// The client makes no call of its own from here on: only the keep-alive
	// can move the session's last activity.
	before := lastActive()
	eventually(t, "a keep-alive call", func() bool { return lastActive().After(before) })

	if !sessionActive(t, ac, key) {
		t.Error("session not active")
	}
	if strings.Contains(logs.String(), msgRelogin) {
		t.Error("the keep-alive logged in again although the session was alive")
	}
}

func TestCloseLogsOut(t *testing.T) {
	_, s := newSim(t, nil)
	ac := adminClient(t, s)
	log, logs := newLogger(t)
	c, err := Connect(context.Background(), simConfig(s), log)
	if err != nil {
		t.Fatal(err)
	}
	key := sessionKey(t, c)

	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if sessionActive(t, ac, key) {
		t.Error("session still active after Close")
	}
	if err := c.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A closed client must not open a session that nothing would close.
	if _, err := methods.GetCurrentTime(context.Background(), c.VIM()); err == nil {
		t.Error("call on a closed client succeeded")
	}
	if strings.Contains(logs.String(), msgRelogin) {
		t.Error("a closed client logged in again")
	}
}
