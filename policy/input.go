package policy

import (
	"bytes"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/taskerd/taskerd/api"
)

// newInput builds the input document as an AST value directly, which spares
// OPA a JSON round trip per decision. Every key is always present (strings
// empty and task_id 0 when they do not apply), so a policy sees one shape.
//
// Only these fields reach the policy: no header, cookie, query string or
// body of the HTTP request is copied, so credentials cannot leak into a
// policy, its print output or the decision log. Keep it that way.
func newInput(req *api.AuthzRequest) (ast.Value, error) {
	claims, err := claimsValue(req.Subject.Claims)
	if err != nil {
		return nil, err
	}
	roles := make([]*ast.Term, len(req.Subject.Roles))
	for i, r := range req.Subject.Roles {
		roles[i] = ast.StringTerm(r)
	}
	var method, path, remote string
	if r := req.Request; r != nil {
		method, remote = r.Method, r.RemoteAddr
		if r.URL != nil {
			path = r.URL.Path
		}
	}
	res := req.Resource
	return ast.NewObject(
		ast.Item(ast.StringTerm("subject"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("id"), ast.StringTerm(req.Subject.ID)),
			ast.Item(ast.StringTerm("roles"), ast.ArrayTerm(roles...)),
			ast.Item(ast.StringTerm("claims"), ast.NewTerm(claims)),
		)),
		ast.Item(ast.StringTerm("action"), ast.StringTerm(req.Action)),
		ast.Item(ast.StringTerm("resource"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("type"), ast.StringTerm(res.Type)),
			ast.Item(ast.StringTerm("namespace"), ast.StringTerm(res.Namespace)),
			ast.Item(ast.StringTerm("workflow"), ast.StringTerm(res.Workflow)),
			ast.Item(ast.StringTerm("version"), ast.StringTerm(res.Version)),
			ast.Item(ast.StringTerm("task_id"), ast.IntNumberTerm(int(res.TaskID))),
			ast.Item(ast.StringTerm("step"), ast.StringTerm(res.Step)),
		)),
		ast.Item(ast.StringTerm("request"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("method"), ast.StringTerm(method)),
			ast.Item(ast.StringTerm("path"), ast.StringTerm(path)),
			ast.Item(ast.StringTerm("remote_addr"), ast.StringTerm(remote)),
		)),
	), nil
}

// claimsValue converts the subject's claims; absent or null claims are an
// empty object so that policies can always write input.subject.claims.x.
func claimsValue(raw []byte) (ast.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ast.NewObject(), nil
	}
	v, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("subject claims are not valid JSON: %w", err)
	}
	return v, nil
}
