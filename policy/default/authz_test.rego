# Unit tests of the default policy: taskerd policy test policy/default
package taskerd.authz_test

import data.taskerd.authz

task_actions := {"task:index", "task:show", "task:create", "task:update", "task:cancel", "task:retry", "task:resolve"}

step_actions := {"step:index", "step:show", "step:update", "step:cancel", "step:retry", "step:resolve"}

schedule_actions := {"schedule:index", "schedule:show", "schedule:pause", "schedule:resume", "schedule:trigger"}

read_actions := {"task:index", "task:show", "step:index", "step:show", "workflow:index", "workflow:show", "schedule:index", "schedule:show", "node:index"}

all_actions := ((task_actions | step_actions) | schedule_actions) | {"workflow:index", "workflow:show", "health:status", "metrics:index", "node:index"}

admin := {"id": "alice", "roles": ["admin"], "claims": {}}

operator := {"id": "oscar", "roles": ["operator"], "claims": {"namespaces": ["ecommerce", "billing"]}}

viewer := {"id": "vera", "roles": ["viewer"], "claims": {}}

scraper := {"id": "prometheus", "roles": ["metrics"], "claims": {}}

nobody := {"id": "nina", "roles": [], "claims": {}}

request(subject, action, namespace) := {
	"subject": subject,
	"action": action,
	"resource": {"type": split(action, ":")[0], "namespace": namespace, "workflow": "", "version": "", "task_id": 0, "step": "", "schedule": ""},
	"request": {"method": "GET", "path": "/v1/tasks", "remote_addr": "127.0.0.1:1234"},
}

allowed(subject, action, namespace) if authz.allow with input as request(subject, action, namespace)

test_admin_may_do_everything if {
	every action in all_actions {
		allowed(admin, action, "anywhere")
		allowed(admin, action, "")
	}
}

test_operator_may_do_task_and_step_actions_in_its_namespaces if {
	every action in task_actions | step_actions {
		allowed(operator, action, "ecommerce")
		allowed(operator, action, "billing")
	}
}

test_operator_may_not_leave_its_namespaces if {
	every action in task_actions | step_actions {
		not allowed(operator, action, "payroll")
		not allowed(operator, action, "")
	}
}

test_operator_may_not_touch_workflows_or_metrics if {
	every action in {"workflow:index", "workflow:show", "metrics:index"} {
		not allowed(operator, action, "ecommerce")
	}
}

test_operator_without_namespaces_claim_may_do_nothing_but_health if {
	bare := object.remove(operator, ["claims"])
	every action in all_actions - {"health:status"} {
		not allowed(bare, action, "ecommerce")
	}
	allowed(bare, "health:status", "")
}

test_operator_namespaces_claim_of_the_wrong_type_allows_nothing if {
	odd := object.union(operator, {"claims": {"namespaces": "ecommerce"}})
	not allowed(odd, "task:show", "ecommerce")
}

test_operator_empty_namespace_claim_does_not_match_unscoped_resources if {
	odd := object.union(operator, {"claims": {"namespaces": ["", 7, null]}})
	not allowed(odd, "task:index", "")
	not allowed(odd, "task:show", "7")
}

test_viewer_may_index_and_show if {
	every action in read_actions {
		allowed(viewer, action, "ecommerce")
		allowed(viewer, action, "")
	}
}

test_viewer_may_not_change_anything if {
	every action in all_actions - read_actions - {"health:status"} {
		not allowed(viewer, action, "ecommerce")
	}
}

test_metrics_may_read_metrics_and_nothing_else if {
	allowed(scraper, "metrics:index", "")
	every action in all_actions - {"metrics:index", "health:status"} {
		not allowed(scraper, action, "ecommerce")
		not allowed(scraper, action, "")
	}
	r := authz.reasons with input as request(scraper, "metrics:index", "")
	r == {"metrics may read the metrics"}
}

test_viewer_and_admin_may_list_nodes if {
	allowed(viewer, "node:index", "")
	allowed(admin, "node:index", "")
}

test_operator_and_scraper_may_not_list_nodes if {
	not allowed(operator, "node:index", "")
	not allowed(operator, "node:index", "ecommerce")
	not allowed(scraper, "node:index", "")
	not allowed(nobody, "node:index", "")
}

test_viewer_may_not_do_other_node_actions if {
	not allowed(viewer, "node:delete", "")
	not allowed(viewer, "node:show", "")
}

test_viewer_may_not_read_metrics if {
	not allowed(viewer, "metrics:index", "")
}

test_everyone_authenticated_may_read_health if {
	every subject in [admin, operator, viewer, scraper, nobody] {
		allowed(subject, "health:status", "")
	}
}

test_no_role_means_nothing_else if {
	every action in all_actions - {"health:status"} {
		not allowed(nobody, action, "ecommerce")
	}
}

test_anonymous_subject_gets_nothing if {
	anonymous := object.union(admin, {"id": ""})
	every action in all_actions {
		not allowed(anonymous, action, "ecommerce")
	}
}

test_unknown_roles_and_actions_are_denied if {
	not allowed({"id": "x", "roles": ["root", "Admin"], "claims": {}}, "task:create", "ecommerce")
	not allowed(viewer, "task", "ecommerce")
	not allowed(viewer, "task:show:extra", "ecommerce")
	not allowed(operator, "taskshow", "ecommerce")
}

test_reasons_explain_an_allow if {
	r := authz.reasons with input as request(viewer, "task:show", "ecommerce")
	r == {"viewer may index and show tasks, steps, workflows and schedules, and list nodes"}
}

test_reasons_name_the_first_grant_that_applies if {
	both := {"id": "vic", "roles": ["viewer", "operator"], "claims": {"namespaces": ["billing"]}}
	r := authz.reasons with input as request(both, "task:show", "billing")
	r == {"operator may do task, step and schedule actions in its namespaces"}
}

test_reasons_explain_a_deny if {
	r := authz.reasons with input as request(operator, "task:cancel", "payroll")
	r == {`no rule of the default policy allows task:cancel on namespace "payroll" for roles ["operator"]`}
}

test_operator_may_do_schedule_actions_in_its_namespaces if {
	every action in schedule_actions {
		allowed(operator, action, "ecommerce")
		not allowed(operator, action, "payroll")
		not allowed(operator, action, "")
	}
}

test_viewer_may_list_and_show_schedules_but_not_change_them if {
	allowed(viewer, "schedule:index", "payroll")
	allowed(viewer, "schedule:show", "payroll")
	every action in {"schedule:pause", "schedule:resume", "schedule:trigger"} {
		not allowed(viewer, action, "payroll")
	}
}

test_metrics_and_nobody_may_not_touch_schedules if {
	every action in schedule_actions {
		not allowed(scraper, action, "ecommerce")
		not allowed(nobody, action, "ecommerce")
	}
}
