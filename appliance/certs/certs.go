// Package certs provides the certificate of the appliance's HTTPS server:
// the operator's own, or a self-signed one made on first start.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Validity is how long a self-signed certificate lasts: the most that
// browsers accept for a server certificate.
const Validity = 825 * 24 * time.Hour

// LoadOrCreate returns the certificate in certFile and keyFile, both PEM.
//
// If neither file exists it makes a self-signed ECDSA P-256 certificate,
// valid for Validity, for "localhost", 127.0.0.1, ::1, the host name of
// the machine and hosts (names or IP addresses). It writes the key with
// mode 0600 and the certificate with mode 0644, each atomically, making
// their directories with mode 0700 if need be, and reports created.
//
// If only one of the files exists, if they do not hold a certificate and
// its key, or if the certificate has expired, the error says which file is
// at fault and what to do.
func LoadOrCreate(certFile, keyFile string, hosts []string) (cert tls.Certificate, created bool, err error) {
	certExists, err := exists(certFile)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	keyExists, err := exists(keyFile)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	switch {
	case certExists && keyExists:
		cert, err := load(certFile, keyFile, time.Now())
		return cert, false, err
	case certExists:
		return tls.Certificate{}, false, fmt.Errorf("key %s of certificate %s does not exist: restore it, or remove %s to make a new self-signed certificate", keyFile, certFile, certFile)
	case keyExists:
		return tls.Certificate{}, false, fmt.Errorf("certificate %s of key %s does not exist: restore it, or remove %s to make a new self-signed certificate", certFile, keyFile, keyFile)
	}
	cert, err = create(certFile, keyFile, hosts, time.Now())
	if err != nil {
		return tls.Certificate{}, false, err
	}
	return cert, true, nil
}

// Fingerprint returns the SHA-256 fingerprint of a DER certificate as
// browsers, openssl and vCenter show it: upper-case hex pairs joined by
// colons.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	b.Grow(len(sum) * 3)
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// load reads a certificate and its key and checks that they can serve at
// now.
func load(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	// tls.X509KeyPair does not say which of its arguments is wrong; the
	// operator needs to know which file to fix.
	if !hasBlock(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return tls.Certificate{}, fmt.Errorf("certificate %s: no PEM CERTIFICATE block", certFile)
	}
	if !hasBlock(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return tls.Certificate{}, fmt.Errorf("key %s: no PEM PRIVATE KEY block", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s and key %s do not go together (%w): give the key of the certificate, or remove both files to make a new self-signed certificate", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("certificate %s expired on %s: replace it, or if it is the self-signed one, remove it and %s to make a new one",
			certFile, leaf.NotAfter.UTC().Format(time.DateOnly), keyFile)
	}
	return cert, nil
}

func hasBlock(data []byte, want func(typ string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if want(b.Type) {
			return true
		}
	}
}

// create makes a self-signed certificate valid from now and writes it and
// its key.
func create(certFile, keyFile string, hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	name := "bulwark"
	hostname, err := os.Hostname()
	if err == nil && hostname != "" {
		name = hostname
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Bulwark self-signed"}},
		// Clients whose clocks are a little behind must accept it too.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	names := []string{"localhost", "127.0.0.1", "::1"}
	if hostname != "" {
		names = append(names, hostname)
	}
	for _, h := range slices.Concat(names, hosts) {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	for _, dir := range []string{filepath.Dir(keyFile), filepath.Dir(certFile)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return tls.Certificate{}, err
		}
	}
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFile(certFile, certPEM, 0o644); err != nil {
		// A key alone would stop the next start; without it, that start
		// tries again.
		_ = os.Remove(keyFile)
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// writeFile writes data to path so that path holds either nothing or all
// of data, even across a crash.
func writeFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// The rename is durable only once the directory is.
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
