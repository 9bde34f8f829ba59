// Package notify tells operators about job runs by mail.
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/config"
)

// DefaultTimeout bounds a Send whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// Mailer sends mail through one relay. It is safe for concurrent use.
type Mailer struct {
	c        config.SMTP
	password []byte
	log      *slog.Logger
}

// NewMailer returns a Mailer for the relay c, logging in with password
// when c has a user name. A nil log discards messages.
func NewMailer(c config.SMTP, password []byte, log *slog.Logger) *Mailer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mailer{c: c, password: password, log: log}
}

// Wants reports whether runs with result ("success", "warning",
// "partial", "failed", "cancelled") are to be mailed.
func (m *Mailer) Wants(result string) bool {
	return slices.Contains(m.c.Notify, result)
}

// Send mails a plain-text message with subject and body to the
// configured recipients. It encrypts the connection with STARTTLS when
// configured to, and never sends a password over an unencrypted
// connection to a host other than localhost. It gives up when ctx is done
// or, if ctx has no deadline, after DefaultTimeout.
func (m *Mailer) Send(ctx context.Context, subject, body string) error {
	addr := net.JoinHostPort(m.c.Host, strconv.Itoa(m.c.Port))
	if err := m.send(ctx, addr, subject, body); err != nil {
		if ctx.Err() != nil {
			// The error is whatever the cancelled connection saw; the
			// cause is the context.
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return fmt.Errorf("mail via %s: %w", addr, err)
	}
	m.log.Debug("mail sent", "relay", addr, "to", m.c.To, "subject", subject)
	return nil
}

func (m *Mailer) send(ctx context.Context, addr, subject, body string) error {
	from, err := mail.ParseAddress(m.c.From)
	if err != nil {
		return fmt.Errorf("from %q: %w", m.c.From, err)
	}
	if len(m.c.To) == 0 {
		return errors.New("no recipients")
	}
	to := make([]*mail.Address, len(m.c.To))
	for i, s := range m.c.To {
		if to[i], err = mail.ParseAddress(s); err != nil {
			return fmt.Errorf("to %q: %w", s, err)
		}
	}
	if m.c.Username != "" && !m.c.StartTLS && !isLocalhost(m.c.Host) {
		return fmt.Errorf("refusing to send the password for %s unencrypted: turn on starttls", m.c.Host)
	}
	msg, err := message(from, to, subject, body, time.Now())
	if err != nil {
		return err
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	// Cancelling ctx fails the read or write in progress at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c, err := smtp.NewClient(conn, m.c.Host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(localName()); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if m.c.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("the server does not offer STARTTLS: turn starttls off only for a relay on localhost")
		}
		if err := c.StartTLS(&tls.Config{ServerName: m.c.Host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if m.c.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("the server does not offer AUTH: remove the user name, or use a relay that logs users in")
		}
		if err := c.Auth(smtp.PlainAuth("", m.c.Username, string(m.password), m.c.Host)); err != nil {
			return fmt.Errorf("AUTH PLAIN as %s: %w", m.c.Username, err)
		}
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("MAIL FROM %s: %w", from.Address, err)
	}
	for _, a := range to {
		if err := c.Rcpt(a.Address); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", a.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	// The relay has taken the message; a failed goodbye loses nothing.
	_ = c.Quit()
	return nil
}

// message returns the message with its header, the body encoded
// quoted-printable with CRLF line ends.
func message(from *mail.Address, to []*mail.Address, subject, body string, now time.Time) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	domain := "bulwark"
	if i := strings.LastIndexByte(from.Address, '@'); i >= 0 && i+1 < len(from.Address) {
		domain = from.Address[i+1:]
	}
	rcpts := make([]string, len(to))
	for i, a := range to {
		rcpts[i] = a.String()
	}
	// A line break in the subject would end the header field, and let
	// the rest of it start another.
	subject = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, subject)

	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, fold(len(k)+2, v)) }
	header("From", from.String())
	header("To", strings.Join(rcpts, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// fold breaks a header field value at spaces so that its lines stay within
// 78 characters where it can: relays refuse lines over 998. indent is the
// length of the field name and colon before the value.
func fold(indent int, value string) string {
	var b strings.Builder
	n := indent
	for i, w := range strings.Split(value, " ") {
		if i > 0 {
			if n+1+len(w) > 78 {
				b.WriteString("\r\n")
				n = 0
			}
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// isLocalhost reports whether host names the local machine, the one place
// a password may be sent in clear; config validation applies the same
// rule.
func isLocalhost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// localName is the name the mailer greets the relay with. Relays may
// refuse "localhost", net/smtp's default.
func localName() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "localhost"
	}
	return name
}
