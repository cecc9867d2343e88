package definition

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Attribute values are evaluated without variables or functions: a workflow
// file is data, and the only references it may hold are depends_on's step.X
// traversals, which are read as traversals and never evaluated.

func at(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func errAt(r hcl.Range, summary, detail string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detail, args...),
		Subject:  r.Ptr(),
	}
}

// evalValue evaluates an attribute to a known, non-null value of type want.
func evalValue(attr *hcl.Attribute, want cty.Type) (cty.Value, hcl.Diagnostics) {
	val, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	if val.IsNull() {
		return cty.NilVal, hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid value",
			"%s must not be null.", attr.Name)}
	}
	conv, err := convert.Convert(val, want)
	if err != nil {
		return cty.NilVal, hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid value",
			"%s must be a %s: %s.", attr.Name, want.FriendlyName(), err)}
	}
	return conv, nil
}

func evalString(attr *hcl.Attribute) (string, hcl.Diagnostics) {
	v, diags := evalValue(attr, cty.String)
	if diags.HasErrors() {
		return "", diags
	}
	return v.AsString(), nil
}

func evalBool(attr *hcl.Attribute) (bool, hcl.Diagnostics) {
	v, diags := evalValue(attr, cty.Bool)
	if diags.HasErrors() {
		return false, diags
	}
	return v.True(), nil
}

// evalInt reads a whole number that fits in an int32 (plenty for a count).
func evalInt(attr *hcl.Attribute) (int, hcl.Diagnostics) {
	v, diags := evalValue(attr, cty.Number)
	if diags.HasErrors() {
		return 0, diags
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		return 0, hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid value",
			"%s must be a whole number, not %s.", attr.Name, bf.Text('g', 10))}
	}
	i, acc := bf.Int64()
	if acc != big.Exact || i > 1<<31-1 || i < -(1<<31) {
		return 0, hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid value",
			"%s is out of range.", attr.Name)}
	}
	return int(i), nil
}

// evalDuration reads a positive Go duration string such as "500ms" or "30s".
func evalDuration(attr *hcl.Attribute) (time.Duration, hcl.Diagnostics) {
	s, diags := evalString(attr)
	if diags.HasErrors() {
		return 0, diags
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid duration",
			"%s = %q is not a duration. Write a number and a unit, e.g. \"500ms\", \"30s\", \"5m\".", attr.Name, s)}
	}
	if d <= 0 {
		return 0, hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid duration",
			"%s must be longer than zero, not %q.", attr.Name, s)}
	}
	return d, nil
}

// evalJSON turns any HCL value into JSON. A null value yields nil.
func evalJSON(attr *hcl.Attribute) (json.RawMessage, hcl.Diagnostics) {
	val, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		return nil, diags
	}
	if val.IsNull() {
		return nil, nil
	}
	b, err := appendJSON(nil, val)
	if err != nil {
		return nil, hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid value",
			"%s cannot be represented as JSON: %s.", attr.Name, err)}
	}
	return b, nil
}

// appendJSON writes a known cty value as JSON. It does what ctyjson.Marshal
// does for the values a constant HCL expression can produce, but writes
// numbers that fit an int64 or a float64 without big.Float's slow shortest
// decimal search (which dominated parsing a large workflow with configs).
func appendJSON(b []byte, v cty.Value) ([]byte, error) {
	if v.IsNull() {
		return append(b, "null"...), nil
	}
	if !v.IsKnown() {
		return nil, fmt.Errorf("value is not known")
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return appendJSONString(b, v.AsString())
	case t == cty.Bool:
		return strconv.AppendBool(b, v.True()), nil
	case t == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInf() {
			return nil, fmt.Errorf("infinity is not a JSON number")
		}
		if i, acc := bf.Int64(); acc == big.Exact {
			return strconv.AppendInt(b, i, 10), nil
		}
		if f, acc := bf.Float64(); acc == big.Exact {
			return strconv.AppendFloat(b, f, 'f', -1, 64), nil
		}
		return append(b, bf.Text('f', -1)...), nil
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		b = append(b, '[')
		for i, it := 0, v.ElementIterator(); it.Next(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			_, ev := it.Element()
			var err error
			if b, err = appendJSON(b, ev); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case t.IsMapType() || t.IsObjectType():
		b = append(b, '{')
		for i, it := 0, v.ElementIterator(); it.Next(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			k, ev := it.Element()
			var err error
			if b, err = appendJSONString(b, k.AsString()); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = appendJSON(b, ev); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	default:
		// Capsule types and the like cannot come from a constant expression;
		// fall back to cty's own encoding for anything unforeseen.
		return ctyjson.Marshal(v, t)
	}
}

// validName accepts the names of workflows, namespaces and steps: ASCII HCL
// identifiers (letters, digits, _ and -, not starting with a digit or -), so
// that a step can be referenced as step.NAME and every name can stand in a
// URL path segment and in namespace/name@version unescaped.
func validName(s string) bool {
	if s == "" || !isLetter(s[0]) && s[0] != '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !isDigit(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// splitHandler reads PLUGIN.HANDLER, each part lowercase letters, digits and _.
func splitHandler(s string) (HandlerRef, bool) {
	plugin, handler, ok := strings.Cut(s, ".")
	if !ok || !handlerPart(plugin) || !handlerPart(handler) {
		return HandlerRef{}, false
	}
	return HandlerRef{Plugin: plugin, Handler: handler}, true
}

func handlerPart(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z') && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

func appendJSONString(b []byte, s string) ([]byte, error) {
	q, err := json.Marshal(s)
	return append(b, q...), err
}
