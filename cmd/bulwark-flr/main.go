// Command bulwark-flr restores files from a Bulwark appliance's restore
// points into the VM it runs in.
//
// It finds its VM by the SMBIOS system UUID (the VM's BIOS UUID), and
// authenticates with a file-restore token scoped to that VM, so that it
// sees nothing of other VMs. It lists the VM's points, browses and
// searches their volumes, and restores files and folders to where they
// were or to a directory, through the same code as the appliance's own
// restores: overwrite policies, owners and times, hard links, sparse
// files, and no partial file under its final name.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
)

// Environment variables that stand for flags.
const (
	envAppliance   = "BULWARK_FLR_APPLIANCE"
	envFingerprint = "BULWARK_FLR_FINGERPRINT"
	envToken       = "BULWARK_FLR_TOKEN"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted: files being written were removed; those restored before stay")
		}
		fmt.Fprintf(stderr, "bulwark-flr: %v\n", err)
		return 1
	}
	return 0
}

// app holds the streams and the global flags.
type app struct {
	stdout, stderr io.Writer

	appliance   string
	fingerprint string
	tokenFile   string
	token       string
	vmUUID      string
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "bulwark-flr",
		Short: "Restore files from Bulwark backups into this VM",
		Long: `bulwark-flr restores files from the appliance's restore points of the VM it runs in.

It finds the VM by its SMBIOS system UUID (--vm-uuid overrides) and logs in with a
file-restore token for that VM, read from --token-file or $` + envToken + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.appliance, "appliance", os.Getenv(envAppliance), "the appliance's URL, https://host:port ($"+envAppliance+")")
	pf.StringVar(&a.fingerprint, "fingerprint", os.Getenv(envFingerprint), "SHA-256 fingerprint of the appliance's certificate, as it printed it ($"+envFingerprint+")")
	pf.StringVar(&a.tokenFile, "token-file", "", "file holding the file-restore token (else $"+envToken+")")
	pf.StringVar(&a.token, "token", "", "the token itself: other users see it in the process list; prefer --token-file")
	pf.StringVar(&a.vmUUID, "vm-uuid", "", "this VM's BIOS UUID, instead of reading the SMBIOS system UUID")
	root.AddCommand(a.pointsCommand(), a.volumesCommand(), a.lsCommand(), a.findCommand(), a.restoreCommand())
	return root
}

// conn is a connection to the appliance on behalf of this VM.
type conn struct {
	c  *fileapi.Client
	vm fileapi.VM
}

// connect connects to the appliance and finds this VM among those whose
// points the token may see.
func (a *app) connect(ctx context.Context) (*conn, error) {
	if a.appliance == "" {
		return nil, fmt.Errorf("no appliance: give --appliance https://host:port or set $%s", envAppliance)
	}
	if !strings.HasPrefix(a.appliance, "https://") {
		return nil, fmt.Errorf("--appliance %q: want an https:// URL", a.appliance)
	}
	pin, err := parseFingerprint(a.fingerprint)
	if err != nil {
		return nil, err
	}
	token, err := a.readToken()
	if err != nil {
		return nil, err
	}
	uuid := a.vmUUID
	if uuid == "" {
		if uuid, err = systemUUID(ctx); err != nil {
			return nil, err
		}
	}
	c := fileapi.New(a.appliance, pin, token)
	vms, err := c.VMs(ctx, uuid)
	if err != nil {
		return nil, err
	}
	var mine []fileapi.VM
	for _, v := range vms {
		// The appliance filters already; an older one may not.
		if fileapi.SameBIOSUUID(uuid, v.BIOSUUID) {
			mine = append(mine, v)
		}
	}
	switch len(mine) {
	case 0:
		return nil, fmt.Errorf("no VM with BIOS UUID %s has points that this token may read", uuid)
	case 1:
		return &conn{c: c, vm: mine[0]}, nil
	}
	var names []string
	for _, v := range mine {
		names = append(names, v.Source.VMName+" ("+v.Source.Name+")")
	}
	return nil, fmt.Errorf("%d VMs share BIOS UUID %s: %s; use a token scoped to one", len(mine), uuid, strings.Join(names, ", "))
}

// readToken reads the token from --token-file, $BULWARK_FLR_TOKEN or, with
// a warning, --token.
func (a *app) readToken() (string, error) {
	var token string
	switch {
	case a.tokenFile != "":
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	case os.Getenv(envToken) != "":
		token = strings.TrimSpace(os.Getenv(envToken))
	case a.token != "":
		fmt.Fprintln(a.stderr, "bulwark-flr: warning: --token shows the token to every user of this system in the process list; use --token-file or $"+envToken)
		token = a.token
	default:
		return "", fmt.Errorf("no token: give --token-file or set $%s", envToken)
	}
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", errors.New("the token is empty or holds white space")
	}
	return token, nil
}

// parseFingerprint reads a SHA-256 fingerprint as the appliance prints it
// ("AB:CD:..."), or as plain hex, optionally after "sha256:".
func parseFingerprint(s string) ([32]byte, error) {
	var pin [32]byte
	if s == "" {
		return pin, fmt.Errorf("no fingerprint: give --fingerprint (the SHA-256 of the appliance's certificate, which it printed at its first start) or set $%s", envFingerprint)
	}
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	h = strings.NewReplacer(":", "", " ", "", "-", "").Replace(h)
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != len(pin) {
		return pin, fmt.Errorf("fingerprint %q: want 32 bytes in hex, as the appliance prints it (AB:CD:…:EF)", s)
	}
	copy(pin[:], b)
	return pin, nil
}

// point resolves a POINT argument, "latest" or an ID or its prefix, to a
// point of this VM.
func (cn *conn) point(ctx context.Context, arg string) (fileapi.Point, error) {
	id := arg
	if arg == "latest" {
		id = cn.vm.Latest
	}
	p, err := cn.c.Point(ctx, id)
	if err != nil {
		return fileapi.Point{}, err
	}
	if p.Source.Name != cn.vm.Source.Name {
		return fileapi.Point{}, fmt.Errorf("point %s is not one of this VM's", arg)
	}
	return p, nil
}
