# taskerd's default authorization policy. A directory given as
# policy { dir = ... } replaces it entirely.
#
# Roles (input.subject.roles):
#   admin     every action on every resource.
#   operator  every task:*, step:* and schedule:* action on resources whose
#             namespace is
#             listed in input.subject.claims.namespaces (an array of
#             strings). A schedule's namespace is its workflow's.
#             A resource without a namespace (an unscoped listing, a task that
#             does not exist) is outside every operator's namespaces.
#   viewer    task, step, workflow and schedule index and show, in every
#             namespace, and node:index (GET /v1/nodes, the cluster's nodes).
#   metrics   metrics:index (GET /metrics) and nothing else: a key for a
#             Prometheus scraper.
# Every authenticated subject (a non-empty input.subject.id) may health:status.
# Nothing else is allowed: metrics:index is for admins and the metrics role.
package taskerd.authz

default allow := false

allow if admin
allow if operator
allow if viewer
allow if metrics
allow if health

# The action is "kind:verb" (docs/concepts.md §8). An action of another
# shape leaves kind and verb undefined, and then only admin can match.
action_parts := split(input.action, ":")

kind := action_parts[0] if count(action_parts) == 2

verb := action_parts[1] if count(action_parts) == 2

authenticated if {
	is_string(input.subject.id)
	input.subject.id != ""
}

admin if {
	authenticated
	"admin" in input.subject.roles
}

operator if {
	authenticated
	"operator" in input.subject.roles
	kind in {"task", "step", "schedule"}
	input.resource.namespace != ""
	input.resource.namespace in input.subject.claims.namespaces
}

viewer if {
	authenticated
	"viewer" in input.subject.roles
	kind in {"task", "step", "workflow", "schedule"}
	verb in {"index", "show"}
}

# Which nodes run and which leads: no task data, and what an on-call
# viewer needs. Operators are scoped to namespaces; nodes have none.
viewer if {
	authenticated
	"viewer" in input.subject.roles
	input.action == "node:index"
}

metrics if {
	authenticated
	"metrics" in input.subject.roles
	input.action == "metrics:index"
}

health if {
	authenticated
	input.action == "health:status"
}

# reasons explain a decision; the API returns them with a 403 and the
# decision log records them. They name roles and namespaces, never secrets.
# One reason, the first that applies, keeps the decision cheap.
reasons := {reason}

reason := "admin may do every action" if {
	admin
} else := "operator may do task, step and schedule actions in its namespaces" if {
	operator
} else := "viewer may index and show tasks, steps, workflows and schedules, and list nodes" if {
	viewer
} else := "metrics may read the metrics" if {
	metrics
} else := "every authenticated subject may read health status" if {
	health
} else := msg if {
	msg := sprintf("no rule of the default policy allows %s on namespace %q for roles %v", [input.action, input.resource.namespace, input.subject.roles])
}
