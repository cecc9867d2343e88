package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/taskerd/taskerd/api"
)

// Schedules and nodes: GET /v1/schedules and GET /v1/nodes.

type scheduleJSON struct {
	Name       string          `json:"name"`
	Namespace  string          `json:"namespace"`
	Workflow   string          `json:"workflow"`
	Cron       string          `json:"cron"`
	Timezone   string          `json:"timezone"`
	Overlap    string          `json:"overlap"`
	CatchUp    string          `json:"catch_up"`
	Context    json.RawMessage `json:"context"`
	Paused     bool            `json:"paused"`
	PausedBy   string          `json:"paused_by"`
	PausedAt   *time.Time      `json:"paused_at"`
	NextFiring *time.Time      `json:"next_firing"`
	LastFiring *struct {
		At      time.Time `json:"at"`
		Kind    string    `json:"kind"`
		Outcome string    `json:"outcome"`
		TaskID  *int64    `json:"task_id"`
	} `json:"last_firing"`
}

func (u *UI) schedulesPage(c *call) error {
	var out struct {
		Schedules []scheduleJSON `json:"schedules"`
	}
	if err := c.apiCall("GET", "/v1/schedules", nil, &out); err != nil {
		return err
	}
	can := map[string]map[string]bool{}
	for _, sc := range out.Schedules {
		wf, _, _ := strings.Cut(sc.Workflow, "@")
		res := api.ScheduleResource(sc.Namespace, wf, sc.Name)
		m := map[string]bool{}
		for _, verb := range []string{"pause", "resume", "trigger"} {
			m[verb] = c.allowed("schedule:"+verb, res)
		}
		can[sc.Name] = m
	}
	u.render(c, http.StatusOK, "schedules.html", "Schedules", map[string]any{"Schedules": out.Schedules, "Can": can})
	return nil
}

func (u *UI) scheduleAction(c *call) error {
	name, verb := c.r.PathValue("name"), c.r.PathValue("verb")
	switch verb {
	case "pause", "resume", "trigger":
	default:
		return httpErr(http.StatusNotFound, "no such action")
	}
	if err := c.apiCall("POST", "/v1/schedules/"+url.PathEscape(name)+"/"+verb, nil, nil); err != nil {
		return err
	}
	return c.redirect("/ui/schedules")
}

func (u *UI) nodesPage(c *call) error {
	var out struct {
		Leader string `json:"leader"`
		Epoch  int64  `json:"epoch"`
		Nodes  []struct {
			ID        string     `json:"id"`
			Address   string     `json:"address"`
			Version   string     `json:"version"`
			Workers   int        `json:"workers"`
			StartedAt time.Time  `json:"started_at"`
			LastSeen  time.Time  `json:"last_seen"`
			StoppedAt *time.Time `json:"stopped_at"`
			State     string     `json:"state"`
			Leader    bool       `json:"leader"`
		} `json:"nodes"`
	}
	if err := c.apiCall("GET", "/v1/nodes", nil, &out); err != nil {
		return err
	}
	u.render(c, http.StatusOK, "nodes.html", "Nodes", out)
	return nil
}
