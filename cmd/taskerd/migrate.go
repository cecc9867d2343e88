package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/sqlite"
)

func newMigrateCmd() *cobra.Command {
	var flags storeFlags
	cmd := &cobra.Command{
		Use:   "migrate [--db DSN]",
		Short: "Bring a database's schema up to this taskerd's version",
		Long: `Apply the schema migrations the database lacks (tables, indexes and, on
PostgreSQL, the readiness and execution-context functions), and say which.

run and resume migrate by default too; with --no-migrate they refuse a
database that is not up to date, so that only this command changes a schema.
A database migrated by a newer taskerd is refused. Several processes may
migrate one PostgreSQL database at once: they take an advisory lock and run
one after the other.

Exit codes: 0 up to date, 1 the database could not be migrated, 2 bad --db.`,
		Example: `  taskerd migrate --db postgres://taskerd@db.internal:5432/taskerd
  TASKERD_DATABASE=postgresql://taskerd@db.internal/taskerd taskerd migrate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch {
			case postgres.IsDSN(flags.db):
				if err := postgres.CheckDSN(flags.db); err != nil {
					return usageErrorf("--db: %s", err)
				}
				applied, err := postgres.Migrate(cmd.Context(), flags.db, postgres.WithWait(flags.dbWait))
				for _, name := range applied {
					fmt.Fprintf(out, "applied %s\n", name)
				}
				if err != nil {
					return &exitError{code: 1, err: oneLine(err)}
				}
				fmt.Fprintf(out, "%s: schema version %d, up to date\n", redactDSN(flags.db), postgres.LatestSchemaVersion())
				return nil
			case strings.HasPrefix(flags.db, "sqlite:"):
				s, err := openStore(cmd.Context(), flags)
				if err != nil {
					return err
				}
				s.Close()
				fmt.Fprintf(out, "%s: schema version %d, up to date\n", flags.db, sqlite.LatestSchemaVersion())
				return nil
			}
			_, err := openStore(cmd.Context(), flags) // the usage error
			return err
		},
	}
	flags.registerDB(cmd.Flags())
	return cmd
}
