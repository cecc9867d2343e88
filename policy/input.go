package policy

import (
	"bytes"
	"fmt"
	"sync"

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
func (e *Engine) newInput(req *api.AuthzRequest) (ast.Value, error) {
	claims, err := e.claims.value(req.Subject.Claims)
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
		ast.Item(keySubject, ast.ObjectTerm(
			ast.Item(keyID, ast.StringTerm(req.Subject.ID)),
			ast.Item(keyRoles, ast.ArrayTerm(roles...)),
			ast.Item(keyClaims, ast.NewTerm(claims)),
		)),
		ast.Item(keyAction, ast.StringTerm(req.Action)),
		ast.Item(keyResource, ast.ObjectTerm(
			ast.Item(keyType, ast.StringTerm(res.Type)),
			ast.Item(keyNamespace, ast.StringTerm(res.Namespace)),
			ast.Item(keyWorkflow, ast.StringTerm(res.Workflow)),
			ast.Item(keyVersion, ast.StringTerm(res.Version)),
			ast.Item(keyTaskID, ast.IntNumberTerm(int(res.TaskID))),
			ast.Item(keyStep, ast.StringTerm(res.Step)),
			ast.Item(keySchedule, ast.StringTerm(res.Schedule)),
		)),
		ast.Item(keyRequest, ast.ObjectTerm(
			ast.Item(keyMethod, ast.StringTerm(method)),
			ast.Item(keyPath, ast.StringTerm(path)),
			ast.Item(keyRemoteAddr, ast.StringTerm(remote)),
		)),
	), nil
}

// The input's keys. Terms are never modified once built, so one of each
// serves every decision (OPA shares its interned terms the same way).
var (
	keySubject    = ast.StringTerm("subject")
	keyID         = ast.StringTerm("id")
	keyRoles      = ast.StringTerm("roles")
	keyClaims     = ast.StringTerm("claims")
	keyAction     = ast.StringTerm("action")
	keyResource   = ast.StringTerm("resource")
	keyType       = ast.StringTerm("type")
	keyNamespace  = ast.StringTerm("namespace")
	keyWorkflow   = ast.StringTerm("workflow")
	keyVersion    = ast.StringTerm("version")
	keyTaskID     = ast.StringTerm("task_id")
	keyStep       = ast.StringTerm("step")
	keySchedule   = ast.StringTerm("schedule")
	keyRequest    = ast.StringTerm("request")
	keyMethod     = ast.StringTerm("method")
	keyPath       = ast.StringTerm("path")
	keyRemoteAddr = ast.StringTerm("remote_addr")
)

// claimsCache keeps the AST of recently seen claims: the same few subjects
// make most requests, and decoding their JSON is a good part of the cost of
// building an input. AST values are read-only during evaluation, so one may
// serve concurrent decisions.
type claimsCache struct {
	mu sync.Mutex
	m  map[string]ast.Value
}

const claimsCacheSize = 1024

// value converts the subject's claims; absent or null claims are an empty
// object so that policies can always write input.subject.claims.x.
func (c *claimsCache) value(raw []byte) (ast.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ast.NewObject(), nil
	}
	c.mu.Lock()
	v, ok := c.m[string(raw)]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("subject claims are not valid JSON: %w", err)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= claimsCacheSize {
		c.m = make(map[string]ast.Value) // crude, bounded, and enough
	}
	c.m[string(raw)] = v
	c.mu.Unlock()
	return v, nil
}
