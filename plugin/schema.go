package plugin

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// schemaDraft is the JSON Schema dialect SchemaOf writes, the one taskerd
// compiles context_schema and result_schema with.
const schemaDraft = "https://json-schema.org/draft/2020-12/schema"

// SchemaOf returns the JSON Schema (draft 2020-12) of the JSON that
// encoding/json writes for a T, as compact JSON text. Paste it into a
// step's result_schema in HCL (JSON is valid HCL object syntax) to have
// taskerd check what the step returns.
//
// It follows encoding/json's rules, read from the Go type:
//
//   - a struct is an object whose properties are its exported fields,
//     named by their json tag; "-" fields are left out; the fields of an
//     embedded struct are promoted as encoding/json promotes them.
//   - every field is required unless its tag says omitempty or omitzero,
//     or it is promoted through an embedded pointer (which may be nil).
//     Properties other than the fields are not forbidden (no
//     additionalProperties): a later version of the type may add some.
//   - a pointer, a slice and a map may be null (encoding/json writes a nil
//     one as null), an array may not; a []byte is a base64 string.
//   - a map is an object of its values; its keys must be strings,
//     integers or encoding.TextMarshaler.
//   - bool is boolean; the integer kinds are integer (unsigned ones with a
//     minimum of 0; a time.Duration is integer nanoseconds); float32 and
//     float64 are number; a field tagged ",string" is a string.
//   - time.Time is a string of format date-time; a type implementing
//     encoding.TextMarshaler is a string; json.RawMessage, interfaces (any)
//     and types implementing json.Marshaler are any value ({}).
//
// Not supported (an error naming the type): channels, functions, complex
// numbers, unsafe pointers, and recursive types (a type that contains
// itself, e.g. a tree).
func SchemaOf[T any]() (json.RawMessage, error) {
	return schemaOfType(reflect.TypeFor[T]())
}

func schemaOfType(t reflect.Type) (json.RawMessage, error) {
	g := schemaGen{onStack: map[reflect.Type]bool{}}
	s, err := g.of(t)
	if err != nil {
		return nil, err
	}
	s["$schema"] = schemaDraft
	return json.Marshal(s)
}

type schema = map[string]any

type schemaGen struct {
	onStack map[reflect.Type]bool
}

var (
	timeType          = reflect.TypeFor[time.Time]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// implements says whether t or *t implements iface (encoding/json calls a
// pointer-receiver method on an addressable value).
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface))
}

func (g *schemaGen) of(t reflect.Type) (schema, error) {
	if t.Kind() == reflect.Pointer {
		// Before the marshaler checks: *T has T's methods, and a nil one
		// is written as null whatever its methods say.
		inner, err := g.of(t.Elem())
		if err != nil {
			return nil, err
		}
		return nullable(inner), nil
	}
	switch {
	case t == timeType:
		return schema{"type": "string", "format": "date-time"}, nil
	case t == rawMessageType:
		return schema{}, nil
	case t.Kind() != reflect.Interface && implements(t, jsonMarshalerType):
		return schema{}, nil
	case t.Kind() != reflect.Interface && implements(t, textMarshalerType):
		return schema{"type": "string"}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return schema{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return schema{"type": "integer"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return schema{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return schema{"type": "number"}, nil
	case reflect.String:
		return schema{"type": "string"}, nil
	case reflect.Interface:
		return schema{}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !implements(t.Elem(), jsonMarshalerType) && !implements(t.Elem(), textMarshalerType) {
			return schema{"type": []any{"string", "null"}, "contentEncoding": "base64"}, nil
		}
		items, err := g.of(t.Elem())
		if err != nil {
			return nil, err
		}
		return schema{"type": []any{"array", "null"}, "items": items}, nil
	case reflect.Array:
		items, err := g.of(t.Elem())
		if err != nil {
			return nil, err
		}
		return schema{"type": "array", "items": items, "minItems": t.Len(), "maxItems": t.Len()}, nil
	case reflect.Map:
		k := t.Key()
		switch {
		case k.Kind() == reflect.String, implements(k, textMarshalerType):
		case k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr:
		default:
			return nil, fmt.Errorf("%s: a map key of type %s cannot be encoded as JSON", t, k)
		}
		values, err := g.of(t.Elem())
		if err != nil {
			return nil, err
		}
		return schema{"type": []any{"object", "null"}, "additionalProperties": values}, nil
	case reflect.Struct:
		return g.object(t)
	default:
		return nil, fmt.Errorf("type %s (kind %s) has no JSON Schema: encoding/json cannot encode it", t, t.Kind())
	}
}

// nullable allows null next to what s allows.
func nullable(s schema) schema {
	if len(s) == 0 {
		return s // any value, null included
	}
	if typ, ok := s["type"].(string); ok {
		out := make(schema, len(s))
		for k, v := range s {
			out[k] = v
		}
		out["type"] = []any{typ, "null"}
		return out
	}
	if typ, ok := s["type"].([]any); ok {
		for _, x := range typ {
			if x == "null" {
				return s
			}
		}
	}
	return schema{"anyOf": []any{s, schema{"type": "null"}}}
}

func (g *schemaGen) object(t reflect.Type) (schema, error) {
	if g.onStack[t] {
		return nil, fmt.Errorf("type %s is recursive (it contains itself); SchemaOf does not support recursive types", t)
	}
	g.onStack[t] = true
	defer delete(g.onStack, t)

	props := schema{}
	var required []any
	for _, f := range jsonFields(t) {
		s, err := g.of(f.typ)
		if err != nil {
			return nil, fmt.Errorf("field %s of %s: %w", f.goName, t, err)
		}
		if f.quoted {
			s = quotedSchema(f.typ, s)
		}
		props[f.name] = s
		if !f.optional {
			required = append(required, f.name)
		}
	}
	out := schema{"type": "object", "properties": props}
	if len(required) > 0 {
		out["required"] = required
	}
	return out, nil
}

// quotedSchema is the schema of a ",string" field: encoding/json writes a
// bool, integer, float or string of one as a JSON string (a pointer to one
// may still be null); on other types the option does nothing.
func quotedSchema(t reflect.Type, s schema) schema {
	base := t
	if base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	switch base.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		if t.Kind() == reflect.Pointer {
			return schema{"type": []any{"string", "null"}}
		}
		return schema{"type": "string"}
	}
	return s
}

// jsonField is a field encoding/json writes.
type jsonField struct {
	name, goName string
	typ          reflect.Type
	tagged       bool // named by a json tag
	optional     bool // omitempty, omitzero, or reached through an embedded pointer
	quoted       bool // ",string"
	depth        int
}

// jsonFields lists the fields encoding/json writes for struct type t,
// embedded structs' promoted fields included, with its rule for names that
// clash: the shallowest wins, then the one a tag names; a clash left
// unresolved drops the name.
func jsonFields(t reflect.Type) []jsonField {
	var all []jsonField
	var walk func(t reflect.Type, depth int, viaPointer bool, seen map[reflect.Type]bool)
	walk = func(t reflect.Type, depth int, viaPointer bool, seen map[reflect.Type]bool) {
		if seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if sf.Anonymous {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if name == "" && et.Kind() == reflect.Struct {
					walk(et, depth+1, viaPointer || ft.Kind() == reflect.Pointer, seen)
					continue
				}
				if !sf.IsExported() && et.Kind() != reflect.Struct {
					continue
				}
			} else if !sf.IsExported() {
				continue
			}
			f := jsonField{name: name, goName: sf.Name, typ: ft, tagged: name != "", depth: depth, optional: viaPointer}
			if f.name == "" {
				f.name = sf.Name
			}
			for o := range strings.SplitSeq(opts, ",") {
				switch o {
				case "omitempty", "omitzero":
					f.optional = true
				case "string":
					f.quoted = true
				}
			}
			all = append(all, f)
		}
	}
	walk(t, 0, false, map[reflect.Type]bool{})

	byName := map[string][]jsonField{}
	var order []string
	for _, f := range all {
		if _, ok := byName[f.name]; !ok {
			order = append(order, f.name)
		}
		byName[f.name] = append(byName[f.name], f)
	}
	var out []jsonField
	for _, name := range order {
		if f, ok := dominant(byName[name]); ok {
			out = append(out, f)
		}
	}
	return out
}

// dominant picks, among the fields of one name, the one encoding/json
// writes, if any.
func dominant(fs []jsonField) (jsonField, bool) {
	minDepth := fs[0].depth
	for _, f := range fs {
		minDepth = min(minDepth, f.depth)
	}
	var top []jsonField
	for _, f := range fs {
		if f.depth == minDepth {
			top = append(top, f)
		}
	}
	if len(top) == 1 {
		return top[0], true
	}
	var tagged []jsonField
	for _, f := range top {
		if f.tagged {
			tagged = append(tagged, f)
		}
	}
	if len(tagged) == 1 {
		return tagged[0], true
	}
	return jsonField{}, false
}
