package notify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/config"
)

// envelope is what the test server received in one session.
type envelope struct {
	auth string // the decoded AUTH PLAIN response
	from string
	to   []string
	data string
}

// server is a minimal SMTP server: enough of RFC 5321 for net/smtp,
// without STARTTLS.
type server struct {
	t  *testing.T
	ln net.Listener
	// reject, if set, answers RCPT TO with this reply.
	reject string
	// silent servers accept connections and never greet.
	silent   bool
	accepted chan struct{}

	mu   sync.Mutex
	sent []envelope
	wg   sync.WaitGroup
}

func newServer(t *testing.T) *server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, ln: ln, accepted: make(chan struct{}, 10)}
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *server) start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepted <- struct{}{}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
}

func (s *server) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *server) envelopes() []envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]envelope(nil), s.sent...)
}

func (s *server) serve(conn net.Conn) {
	if s.silent {
		// Wait for the client to give up.
		io.Copy(io.Discard, conn)
		return
	}
	tp := textproto.NewConn(conn)
	var e envelope
	reply := func(format string, args ...any) bool { return tp.PrintfLine(format, args...) == nil }
	if !reply("220 test ESMTP") {
		return
	}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			if !reply("250-test greets %s", arg) || !reply("250-AUTH PLAIN") || !reply("250 8BITMIME") {
				return
			}
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			b, err := base64.StdEncoding.DecodeString(resp)
			if mech != "PLAIN" || err != nil {
				reply("504 unsupported")
				continue
			}
			e.auth = string(b)
			reply("235 2.7.0 accepted")
		case "MAIL":
			e.from = path(arg)
			reply("250 2.1.0 ok")
		case "RCPT":
			if s.reject != "" {
				reply("%s", s.reject)
				continue
			}
			e.to = append(e.to, path(arg))
			reply("250 2.1.5 ok")
		case "DATA":
			reply("354 go on")
			data, err := io.ReadAll(tp.DotReader())
			if err != nil {
				return
			}
			e.data = string(data)
			s.mu.Lock()
			s.sent = append(s.sent, e)
			s.mu.Unlock()
			e = envelope{}
			reply("250 2.0.0 queued")
		case "RSET":
			e = envelope{}
			reply("250 ok")
		case "NOOP":
			reply("250 ok")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 5.5.2 unknown command")
		}
	}
}

// path returns the address in the argument of MAIL or RCPT, without the
// parameters that may follow it.
func path(arg string) string {
	_, rest, _ := strings.Cut(arg, "<")
	addr, _, _ := strings.Cut(rest, ">")
	return addr
}

func testConfig(port int) config.SMTP {
	return config.SMTP{
		Host:     "127.0.0.1",
		Port:     port,
		Username: "bulwark",
		From:     "Bulwark Backup <bulwark@example.com>",
		To:       []string{"ops@example.com", "Zoë Ops <zoe@example.org>"},
		Notify:   []string{"failed", "partial"},
	}
}

func TestSend(t *testing.T) {
	s := newServer(t)
	s.start()
	m := NewMailer(testConfig(s.port()), []byte("p4ss word"), nil)

	subject := "Job nightly: failed — 2 VMs not backed up"
	body := "VM web-01: snapshot failed\n" +
		".a line starting with a dot\n" +
		"a = sign and trailing space \n" +
		strings.Repeat("a long line of text ", 10) + "\n" +
		"grüße\n"
	before := time.Now().Add(-time.Second)
	if err := m.Send(context.Background(), subject, body); err != nil {
		t.Fatal(err)
	}

	sent := s.envelopes()
	if len(sent) != 1 {
		t.Fatalf("server received %d messages, want 1", len(sent))
	}
	e := sent[0]
	if e.auth != "\x00bulwark\x00p4ss word" {
		t.Errorf("AUTH PLAIN %q, want the user name and password", e.auth)
	}
	if e.from != "bulwark@example.com" {
		t.Errorf("MAIL FROM <%s>, want <bulwark@example.com>", e.from)
	}
	if strings.Join(e.to, ",") != "ops@example.com,zoe@example.org" {
		t.Errorf("RCPT TO %q", e.to)
	}

	msg, err := mail.ReadMessage(strings.NewReader(e.data))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Header
	for k, want := range map[string]string{
		"MIME-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if from, err := h.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "bulwark@example.com" || from[0].Name != "Bulwark Backup" {
		t.Errorf("From: %q (%v)", h.Get("From"), err)
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 2 || to[1].Name != "Zoë Ops" || to[1].Address != "zoe@example.org" {
		t.Errorf("To: %q (%v)", h.Get("To"), err)
	}
	raw := h.Get("Subject")
	if !strings.HasPrefix(raw, "=?utf-8?q?") {
		t.Errorf("Subject %q is not RFC 2047-encoded", raw)
	}
	if got, err := new(mime.WordDecoder).DecodeHeader(raw); err != nil || got != subject {
		t.Errorf("Subject decodes to %q (%v), want %q", got, err, subject)
	}
	if date, err := h.Date(); err != nil || date.Before(before) || date.After(time.Now().Add(time.Second)) {
		t.Errorf("Date: %q (%v)", h.Get("Date"), err)
	}
	if id := h.Get("Message-ID"); !regexp.MustCompile(`^<[0-9a-f]{32}@example\.com>$`).MatchString(id) {
		t.Errorf("Message-ID: %q", id)
	}

	encoded, err := io.ReadAll(msg.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(encoded)) {
		if len(line) > 78 {
			t.Errorf("body line of %d characters: %q", len(line), line)
		}
	}
	decoded, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(string(encoded))))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ReplaceAll(string(decoded), "\r\n", "\n"); got != body {
		t.Errorf("body decodes to\n%q\nwant\n%q", got, body)
	}
}

func TestSendASCIISubjectAndNoAuth(t *testing.T) {
	s := newServer(t)
	s.start()
	c := testConfig(s.port())
	c.Username = ""
	m := NewMailer(c, nil, nil)
	if err := m.Send(context.Background(), "Job nightly: success\r\nBcc: evil@example.com", "ok"); err != nil {
		t.Fatal(err)
	}
	sent := s.envelopes()
	if len(sent) != 1 {
		t.Fatalf("server received %d messages, want 1", len(sent))
	}
	if sent[0].auth != "" {
		t.Errorf("logged in as %q without a user name", sent[0].auth)
	}
	msg, err := mail.ReadMessage(strings.NewReader(sent[0].data))
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("Subject"); got != "Job nightly: success  Bcc: evil@example.com" {
		t.Errorf("Subject %q", got)
	}
	if got := msg.Header.Get("Bcc"); got != "" {
		t.Errorf("the subject added a Bcc header: %q", got)
	}
}

func TestLongHeaders(t *testing.T) {
	s := newServer(t)
	s.start()
	c := testConfig(s.port())
	for i := range 20 {
		c.To = append(c.To, fmt.Sprintf("Operator Number %d <op%d@example.com>", i, i))
	}
	subjects := []string{
		strings.TrimSpace(strings.Repeat("Job nightly failed again ", 60)),
		strings.TrimSpace(strings.Repeat("Sicherung fehlgeschlagen für VM „web-01“ ", 30)),
	}
	for _, subject := range subjects {
		if err := NewMailer(c, []byte("pw"), nil).Send(context.Background(), subject, "body"); err != nil {
			t.Fatal(err)
		}
	}
	sent := s.envelopes()
	if len(sent) != len(subjects) {
		t.Fatalf("server received %d messages, want %d", len(sent), len(subjects))
	}
	for i, e := range sent {
		for line := range strings.Lines(e.data) {
			// An encoded word, up to 75 characters, cannot be broken,
			// so the first line of a subject may be a little longer.
			if len(line) > len("Subject: \r\n")+75 {
				t.Errorf("line of %d characters: %q", len(line), line)
			}
		}
		msg, err := mail.ReadMessage(strings.NewReader(e.data))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil || got != subjects[i] {
			t.Errorf("Subject decodes to %q (%v), want %q", got, err, subjects[i])
		}
		to, err := msg.Header.AddressList("To")
		if err != nil || len(to) != len(c.To) || to[len(to)-1].Name != "Operator Number 19" {
			t.Errorf("To: %d addresses (%v), want %d", len(to), err, len(c.To))
		}
	}
}

func TestSendRejected(t *testing.T) {
	s := newServer(t)
	s.reject = "550 5.1.1 no such user"
	s.start()
	m := NewMailer(testConfig(s.port()), []byte("pw"), nil)
	err := m.Send(context.Background(), "subject", "body")
	if err == nil {
		t.Fatal("Send succeeded although the server refused the recipient")
	}
	for _, want := range []string{"127.0.0.1:", "RCPT TO ops@example.com", `550 "5.1.1 no such user"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if n := len(s.envelopes()); n != 0 {
		t.Errorf("server received %d messages", n)
	}
}

func TestSendCancelled(t *testing.T) {
	s := newServer(t)
	s.silent = true
	s.start()
	m := NewMailer(testConfig(s.port()), []byte("pw"), nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Send(ctx, "subject", "body") }()
	<-s.accepted // the client waits for a greeting that never comes
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send error = %v, want context.Canceled", err)
	}

	// A context done before the dial stops Send at once too.
	if err := m.Send(ctx, "subject", "body"); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context: error = %v, want context.Canceled", err)
	}
}

func TestStartTLSRequired(t *testing.T) {
	s := newServer(t)
	s.start()
	c := testConfig(s.port())
	c.StartTLS = true
	err := NewMailer(c, []byte("pw"), nil).Send(context.Background(), "subject", "body")
	if err == nil || !strings.Contains(err.Error(), "the server does not offer STARTTLS") {
		t.Errorf("Send error = %v, want one about STARTTLS", err)
	}
	if n := len(s.envelopes()); n != 0 {
		t.Errorf("server received %d messages in clear", n)
	}
}

func TestNoPasswordInClear(t *testing.T) {
	c := testConfig(25)
	c.Host = "smtp.example.com"
	err := NewMailer(c, []byte("pw"), nil).Send(context.Background(), "subject", "body")
	if err == nil || !strings.Contains(err.Error(), "refusing to send the password for smtp.example.com unencrypted") {
		t.Errorf("Send error = %v, want a refusal", err)
	}
}

func TestWants(t *testing.T) {
	m := NewMailer(config.SMTP{Notify: []string{"failed", "partial"}}, nil, nil)
	for result, want := range map[string]bool{
		"failed": true, "partial": true, "warning": false, "success": false, "cancelled": false, "": false,
	} {
		if got := m.Wants(result); got != want {
			t.Errorf("Wants(%q) = %t, want %t", result, got, want)
		}
	}
}
