package backends

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// What every backend can store. PostgreSQL refuses a NUL character in text
// and a \u0000 escape (or a lone UTF-16 surrogate) in jsonb, and refuses
// bytes that are not UTF-8; SQLite stores all of it. So that both backends
// give the same answer, callers check values with CheckText and CheckJSON
// before they reach a store, and refuse what fails (the API with 400 or 422,
// the engine by failing the attempt with kind invalid_result).

// ErrUnstorable is wrapped by CheckText and CheckJSON's errors.
var ErrUnstorable = errors.New("value cannot be stored")

// CheckText reports why s cannot be stored as text by every backend:
// bytes that are not UTF-8, or a NUL character.
func CheckText(s string) error {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Errorf("%w: byte %d is not UTF-8", ErrUnstorable, i)
		case r == 0:
			return fmt.Errorf("%w: byte %d is a NUL character", ErrUnstorable, i)
		}
		i += n
	}
	return nil
}

// CheckJSON reports why raw cannot be stored as a JSON document by every
// backend: it is not JSON, it holds bytes that are not UTF-8 or a raw NUL,
// or one of its strings holds the escape \u0000 or a UTF-16 surrogate that
// is not half of a pair.
func CheckJSON(raw []byte) error {
	if err := CheckText(string(raw)); err != nil {
		return err
	}
	if !json.Valid(raw) {
		return fmt.Errorf("%w: not valid JSON", ErrUnstorable)
	}
	// The document is valid JSON, so a backslash outside a string cannot
	// occur and every escape inside one is well formed: scan the escapes.
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if raw[i+1] != 'u' {
				i++ // \" \\ \/ \b \f \n \r \t
				continue
			}
			u := hex4(raw[i+2 : i+6])
			switch {
			case u == 0:
				return fmt.Errorf("%w: byte %d is the escape \\u0000 (a NUL character)", ErrUnstorable, i)
			case u >= 0xD800 && u < 0xDC00:
				// A high surrogate must be followed by a low one.
				if i+12 > len(raw) || raw[i+6] != '\\' || raw[i+7] != 'u' {
					return fmt.Errorf("%w: byte %d is an unpaired UTF-16 surrogate", ErrUnstorable, i)
				}
				if lo := hex4(raw[i+8 : i+12]); lo < 0xDC00 || lo > 0xDFFF {
					return fmt.Errorf("%w: byte %d is an unpaired UTF-16 surrogate", ErrUnstorable, i)
				}
				i += 11
			case u >= 0xDC00 && u <= 0xDFFF:
				return fmt.Errorf("%w: byte %d is an unpaired UTF-16 surrogate", ErrUnstorable, i)
			default:
				i += 5
			}
		}
	}
	return nil
}

// hex4 decodes four hexadecimal digits (json.Valid has checked them).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		}
	}
	return r
}

// CheckJSONCorpus holds valid JSON documents on both sides of CheckJSON's
// line, for the tests that hold each backend to it.
var CheckJSONCorpus = struct{ Storable, Unstorable []string }{
	Storable: []string{
		`{}`, `[]`, `null`, `"x"`, `{"a":"b"}`,
		`{"escaped backslash then u0000":"\\u0000"}`,
		`{"pair":"\ud83d\ude00"}`, `{"PAIR":"\uD83D\uDE00"}`,
		`{"bmp":"\u00e9\u4e2d"}`, `{"quote":"\"\\u0000\""}`,
		`{"controls":"\u0001\u001f\n\t"}`,
	},
	Unstorable: []string{
		`{"a":"\u0000"}`, `["x\u0000y"]`, `{"\u0000":1}`,
		`{"lone high":"\ud83d"}`, `{"lone high then text":"\ud83dabcdef"}`,
		`{"high then high":"\ud83d\ud83d"}`, `{"lone low":"\ude00"}`,
	},
}

// SanitizeText makes s storable by every backend: bytes that are not UTF-8
// and NUL characters become U+FFFD. For text taskerd writes itself from
// what others said (a handler's failure message), where refusing is not
// an option.
func SanitizeText(s string) string {
	if CheckText(s) == nil {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
