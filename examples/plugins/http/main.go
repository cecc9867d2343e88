// Command http is a taskerd step-handler plugin that makes one HTTP request
// per step, described by the step's config with values drawn from the task
// context and the parents' results. See README.md.
package main

import "github.com/taskerd/taskerd/plugin"

func main() {
	s := New()
	plugin.Serve(plugin.Handlers{
		"request": s.Request,
	},
		plugin.WithDescriptions(map[string]string{
			"request": "Make an HTTP request from the step config; 2xx succeeds with status, headers and body",
		}),
		plugin.WithConfigure(s.Configure),
	)
}
