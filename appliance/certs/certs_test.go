package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCreateAndReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "tls")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	hosts := []string{"backup.example.com", "192.0.2.7", "[2001:db8::7]", "localhost"}

	before := time.Now()
	cert, created, err := LoadOrCreate(certFile, keyFile, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("created = false for a new certificate")
	}
	leaf := cert.Leaf
	if leaf == nil {
		t.Fatal("no leaf certificate")
	}
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if got := leaf.NotAfter.Sub(before); got < Validity-time.Minute || got > Validity+time.Minute {
		t.Errorf("valid for %s from now, want %s", got, Validity)
	}
	if leaf.NotBefore.After(before) {
		t.Errorf("not valid before %s, later than its creation", leaf.NotBefore)
	}
	wantDNS := []string{"localhost", "backup.example.com"}
	if h, err := os.Hostname(); err == nil {
		wantDNS = append(wantDNS, h)
	}
	for _, name := range wantDNS {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("not valid for %s: %v", name, err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "192.0.2.7", "2001:db8::7"} {
		if err := leaf.VerifyHostname(ip); err != nil {
			t.Errorf("not valid for %s: %v", ip, err)
		}
	}
	if n := strings.Count(strings.Join(leaf.DNSNames, ","), "localhost"); n != 1 {
		t.Errorf("DNS names %q: localhost %d times, want once", leaf.DNSNames, n)
	}
	if err := leaf.VerifyHostname("other.example.com"); err == nil {
		t.Error("valid for other.example.com")
	}

	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {keyFile, 0o600}, {certFile, 0o644}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != f.mode {
			t.Errorf("%s: mode %s, want %s", f.path, fi.Mode(), f.mode)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("directory holds %d files, want the certificate and the key alone", len(entries))
	}

	again, created, err := LoadOrCreate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("created = true for an existing certificate")
	}
	if !bytes.Equal(again.Certificate[0], cert.Certificate[0]) {
		t.Error("reload gave another certificate")
	}
	if !again.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(again.PrivateKey.(*ecdsa.PrivateKey).Public()) {
		t.Error("reloaded key does not match")
	}
}

func TestFingerprint(t *testing.T) {
	if got, want := Fingerprint([]byte("abc")),
		"BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"; got != want {
		t.Errorf("Fingerprint(abc) = %s, want %s", got, want)
	}

	dir := t.TempDir()
	cert, _, err := LoadOrCreate(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	der := cert.Certificate[0]
	got := Fingerprint(der)
	// openssl x509 -noout -fingerprint -sha256 prints
	// "sha256 Fingerprint=" and this.
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(got) {
		t.Errorf("Fingerprint = %q, want 32 upper-case hex pairs joined by colons", got)
	}
	sum := sha256.Sum256(der)
	if want := strings.ToUpper(hex.EncodeToString(sum[:])); strings.ReplaceAll(got, ":", "") != want {
		t.Errorf("Fingerprint = %s, want the SHA-256 %s", got, want)
	}
}

func TestMismatch(t *testing.T) {
	dir := t.TempDir()
	cert1, key1 := filepath.Join(dir, "1.crt"), filepath.Join(dir, "1.key")
	cert2, key2 := filepath.Join(dir, "2.crt"), filepath.Join(dir, "2.key")
	for _, p := range [][2]string{{cert1, key1}, {cert2, key2}} {
		if _, _, err := LoadOrCreate(p[0], p[1], nil); err != nil {
			t.Fatal(err)
		}
	}
	_, created, err := LoadOrCreate(cert1, key2, nil)
	if err == nil {
		t.Fatal("a certificate with another's key loaded")
	}
	if created {
		t.Error("created = true")
	}
	for _, want := range []string{cert1, key2, "do not go together"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	// Nothing was replaced.
	if _, _, err := LoadOrCreate(cert1, key1, nil); err != nil {
		t.Errorf("the first pair no longer loads: %v", err)
	}
}

func TestNotPEM(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, _, err := LoadOrCreate(certFile, keyFile, nil); err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	// The key where the certificate belongs, and the other way round.
	write(t, certFile, keyPEM)
	write(t, keyFile, keyPEM)
	_, _, err = LoadOrCreate(certFile, keyFile, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "certificate "+certFile+": no PEM CERTIFICATE block") {
		t.Errorf("key as certificate: error = %v", err)
	}
	write(t, certFile, certPEM)
	write(t, keyFile, certPEM)
	_, _, err = LoadOrCreate(certFile, keyFile, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "key "+keyFile+": no PEM PRIVATE KEY block") {
		t.Errorf("certificate as key: error = %v", err)
	}
}

func TestOnlyOneFile(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, _, err := LoadOrCreate(certFile, keyFile, nil); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadOrCreate(certFile, keyFile, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "key "+keyFile+" of certificate "+certFile+" does not exist: restore it, or remove "+certFile) {
		t.Errorf("missing key: error = %v", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key was made: %v", err)
	}

	write(t, keyFile, keyPEM)
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadOrCreate(certFile, keyFile, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "certificate "+certFile+" of key "+keyFile+" does not exist: restore it, or remove "+keyFile) {
		t.Errorf("missing certificate: error = %v", err)
	}
}

func TestExpired(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	long := time.Now().Add(-Validity - 48*time.Hour)
	if _, err := create(certFile, keyFile, nil, long); err != nil {
		t.Fatal(err)
	}
	_, created, err := LoadOrCreate(certFile, keyFile, nil)
	if err == nil {
		t.Fatal("an expired certificate loaded")
	}
	want := fmt.Sprintf("certificate %s expired on %s: ", certFile, long.Add(Validity).UTC().Format(time.DateOnly))
	if created || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("error = %v, created %t; want %q", err, created, want)
	}
}

// TestServe serves HTTPS with the certificate to a client that trusts it
// by its fingerprint alone, as an operator pinning it would.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	cert, _, err := LoadOrCreate(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	get := func(cfg *tls.Config) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	pin := func(fp string) *tls.Config {
		return &tls.Config{
			// The chain is not verified: the pinned fingerprint replaces
			// it.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || Fingerprint(raw[0]) != fp {
					return errors.New("fingerprint mismatch")
				}
				return nil
			},
		}
	}

	if body, err := get(pin(Fingerprint(cert.Certificate[0]))); err != nil || body != "hello" {
		t.Errorf("pinned client: %q, %v", body, err)
	}
	if _, err := get(pin(Fingerprint([]byte("another")))); err == nil || !strings.Contains(err.Error(), "fingerprint mismatch") {
		t.Errorf("client pinning another fingerprint: error = %v", err)
	}

	// A client that trusts the certificate as a root verifies it for the
	// address it dialled: the SANs are right.
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	if host, _, _ := net.SplitHostPort(srv.Listener.Addr().String()); host != "127.0.0.1" {
		t.Fatalf("server on %s, want 127.0.0.1", host)
	}
	if body, err := get(&tls.Config{RootCAs: roots}); err != nil || body != "hello" {
		t.Errorf("client trusting the certificate: %q, %v", body, err)
	}
	if _, err := get(&tls.Config{RootCAs: x509.NewCertPool()}); err == nil {
		t.Error("a client trusting nothing accepted the self-signed certificate")
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFileLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, data := range []string{"one", "two"} {
		if err := writeFile(path, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "two" {
		t.Errorf("file holds %q, %v; want two", got, err)
	}
	entries, _ := os.ReadDir(dir)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	if !slices.Equal(names, []string{"f"}) {
		t.Errorf("directory holds %q, want f alone", names)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode() != 0o640 {
		t.Errorf("mode %v, %v; want 0640", fi.Mode(), err)
	}
	if err := writeFile(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("writeFile into a missing directory succeeded")
	}
}
