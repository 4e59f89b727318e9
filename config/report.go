package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// merge adds problems to e, except those about a key (or a key inside
// one) that e already reports: a value that did not decode is also zero
// for validation, and an unknown key is found both by the file check and
// by exact decoding.
func (e *ValidationError) merge(problems []Problem) {
	reported := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		reported[i] = p.Key
	}
	for _, p := range problems {
		if !containsOverlap(reported, p.Key) {
			e.Problems = append(e.Problems, p)
		}
	}
}

func containsOverlap(keys []string, key string) bool {
	for _, k := range keys {
		if within(k, key) || within(key, k) {
			return true
		}
	}
	return false
}

// within reports whether key is parent or a key inside it.
func within(key, parent string) bool {
	return key == parent || strings.HasPrefix(key, parent+".") || strings.HasPrefix(key, parent+"[")
}

// sources knows where Load found each value, to say which one is wrong.
type sources struct {
	file     string   // the file read, if any
	fileKeys []string // the leaf keys it sets
	flags    map[string]*pflag.Flag
}

// of names where key's value came from: a flag that was set, else an
// environment variable, else the file; for a key inside a list or a map,
// whichever set the nearest enclosing key. Empty means the default.
func (s *sources) of(key string) string {
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i]
	}
	for k := key; k != ""; {
		if f := s.flags[k]; f != nil && f.Changed {
			return "flag --" + f.Name
		}
		if name := EnvVar(k); os.Getenv(name) != "" {
			return "environment variable " + name
		}
		for _, fk := range s.fileKeys {
			if within(fk, k) {
				return s.file
			}
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return ""
}

// attribute fills in each problem's source. When every problem with a
// source comes from the file, the report names the file once.
func (s *sources) attribute(e *ValidationError) {
	onlyFile := true
	for i := range e.Problems {
		p := &e.Problems[i]
		p.Source = s.of(p.Key)
		if p.Source != "" && p.Source != s.file {
			onlyFile = false
		}
	}
	if onlyFile && s.file != "" {
		e.File = s.file
	}
}

// decodeProblems turns the errors of decoding into problems, one per key.
// It reports false for an error it does not recognise.
func decodeProblems(err error, v *viper.Viper) ([]Problem, bool) {
	var out []Problem
	ok := true
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case *mapstructure.DecodeError:
			inner := e.Unwrap()
			switch inner.(type) {
			case *mapstructure.DecodeError, interface{ Unwrap() []error }:
				walk(inner) // nested errors carry their full names
				return
			}
			out = append(out, decodeProblem(keyName(e.Name()), inner, v)...)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		default:
			ok = false
		}
	}
	walk(err)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, ok && len(out) > 0
}

var bracketed = regexp.MustCompile(`\[([^\]]*)\]`)

// keyName spells a decoder's field name as the keys of this package do:
// passport.roles[r].scope[0] is passport.roles.r.scope[0].
func keyName(name string) string {
	return bracketed.ReplaceAllStringFunc(name, func(m string) string {
		inner := m[1 : len(m)-1]
		if strings.Trim(inner, "0123456789") == "" {
			return m
		}
		return "." + inner
	})
}

func decodeProblem(key string, err error, v *viper.Viper) []Problem {
	join := func(k string) string {
		if key == "" {
			return k
		}
		return key + "." + k
	}
	if list, ok := strings.CutPrefix(err.Error(), "has invalid keys: "); ok {
		var out []Problem
		for _, k := range strings.Split(list, ", ") {
			out = append(out, Problem{Key: join(k), Message: "unknown key"})
		}
		return out
	}
	p := Problem{Key: key}
	var pe *mapstructure.ParseError
	var ue *mapstructure.UnconvertibleTypeError
	switch {
	case asError(err, &pe):
		p.Value = fmt.Sprint(pe.Value)
		p.Message = "must be " + describeType(pe.Expected.Type())
	case asError(err, &ue):
		if s := scalar(ue.Value); s != "" {
			p.Value = s
		}
		p.Message = "must be " + describeType(ue.Expected.Type())
	case strings.HasPrefix(err.Error(), "time: "):
		// The duration hook's own error.
		if !strings.Contains(key, "[") {
			p.Value = scalar(v.Get(key))
		}
		p.Message = "must be " + describeType(reflect.TypeFor[time.Duration]())
	default:
		p.Message = err.Error()
	}
	return []Problem{p}
}

func asError[T error](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

// scalar returns v as text when it is a single value, else "".
func scalar(v any) string {
	switch v.(type) {
	case string, bool, int, int64, float64:
		return fmt.Sprint(v)
	}
	return ""
}

func describeType(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration such as 10s, 5m or 1h30m"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping of keys to values"
	}
	return "a " + t.String()
}
