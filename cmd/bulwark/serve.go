package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/bulwarkbackup/bulwark/appliance"
	"github.com/bulwarkbackup/bulwark/appliance/config"
)

func (a *app) serveCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the appliance: the HTTPS API, the scheduler and the job runner",
		Long: `Run the appliance as configured in the YAML file given with --config (see
deploy/bulwark.yaml). On first start it creates the store (store.create), a
self-signed certificate (unless tls.cert and tls.key are given), whose SHA-256
fingerprint it prints, and the admin user: with the password in
$BULWARK_ADMIN_PASSWORD, or a generated one that it prints once.

Logs are JSON lines on stderr (log.format). SIGTERM or Ctrl-C stops taking
requests, cancels the backups under way (removing their snapshots, making no
partial point) and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			log := slog.New(cfg.Log.Handler(a.stderr))
			ap, err := appliance.Open(cmd.Context(), appliance.Options{
				Config: cfg, AdminPassword: os.Getenv("BULWARK_ADMIN_PASSWORD"), Notices: a.stdout,
				Resolve: openAttachedDevice, Version: version, Log: log,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "serving on %s\n", ap.URL())
			return ap.Serve(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&path, "config", "/etc/bulwark/bulwark.yaml", "the configuration file")
	return cmd
}
