package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/internal/cluster"
)

// taskerd nodes: a client of GET /v1/nodes, like the task subcommands.

type apiNodes struct {
	Leader string    `json:"leader"`
	Epoch  int64     `json:"epoch"`
	Nodes  []apiNode `json:"nodes"`
}

type apiNode struct {
	ID        string    `json:"id"`
	Address   string    `json:"address"`
	Version   string    `json:"version"`
	Workers   int       `json:"workers"`
	StartedAt time.Time `json:"started_at"`
	LastSeen  time.Time `json:"last_seen"`
	State     string    `json:"state"`
	Leader    bool      `json:"leader"`
}

func newNodesCmd() *cobra.Command {
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:   "nodes [--json]",
		Short: "List the cluster's nodes and its leader through a running taskerd serve",
		Long: `Lists the nodes registered in the server's database: each one's id,
state (alive; dead: silent for three heartbeats, its leases recovered by the
leader; stopped: it left cleanly), address, version, workers and when it was
last seen. The leader is marked with *. Needs the policy action node:index
(admin and viewer in the default policy).

--server, --token and --json work as for "taskerd task".`,
		Args:             cobra.NoArgs,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) { c.out = cmd.OutOrStdout() },
		RunE: func(cmd *cobra.Command, _ []string) error {
			var v apiNodes
			raw, err := c.call("GET", "/v1/nodes", nil, &v)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printNodes(w, v, time.Now()) })
		},
	}
	c.addFlags(cmd)
	return cmd
}

func printNodes(w io.Writer, v apiNodes, now time.Time) {
	if v.Leader == "" {
		fmt.Fprintln(w, "leader:\tnone (no node holds the leader lease; one takes it within three heartbeats)")
	} else {
		fmt.Fprintf(w, "leader:\t%s (epoch %d)\n", v.Leader, v.Epoch)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\tID\tSTATE\tADDRESS\tVERSION\tWORKERS\tSTARTED\tLAST SEEN")
	for _, n := range v.Nodes {
		mark := ""
		if n.Leader {
			mark = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s ago\n", mark, n.ID, n.State, n.Address, n.Version, n.Workers,
			n.StartedAt.Format(time.RFC3339), now.Sub(n.LastSeen).Round(time.Second))
	}
}

// clusterSettings reads the cluster and retention blocks of taskerd.hcl
// (cfg may be nil), with the defaults filled in: a heartbeat of
// cluster.DefaultHeartbeat, the listen address ("" here), finished tasks
// kept forever (0) and schedule firings kept
// config.DefaultScheduleFiringsRetention.
func clusterSettings(cfg *config.Config) (config.Cluster, config.Retention) {
	c := config.Cluster{Heartbeat: cluster.DefaultHeartbeat}
	r := config.Retention{ScheduleFirings: config.DefaultScheduleFiringsRetention}
	if cfg != nil && cfg.Cluster != nil {
		c.Address = cfg.Cluster.Address
		if cfg.Cluster.Heartbeat > 0 {
			c.Heartbeat = cfg.Cluster.Heartbeat
		}
	}
	if cfg != nil && cfg.Retention != nil {
		r.FinishedTasks = cfg.Retention.FinishedTasks
		if cfg.Retention.ScheduleFirings > 0 {
			r.ScheduleFirings = cfg.Retention.ScheduleFirings
		}
	}
	return c, r
}
