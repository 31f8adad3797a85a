// Package config loads a service's settings into a flag.FlagSet from, in
// rising order of precedence: the defaults in code, an optional config file,
// the environment, and the command line.
//
// Every setting is a flag, so one name works everywhere: the flag
// -kafka-brokers is the key "kafka-brokers" in the file and the variable
// GOCHAT_KAFKA_BROKERS in the environment. The file is YAML or JSON holding
// a flat map of flag names to values; its path comes from -config or
// GOCHAT_CONFIG.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the environment name of every setting.
const EnvPrefix = "GOCHAT_"

// EnvName is the environment variable that sets the flag called name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse loads settings into fs. fs must not define "config" itself; Parse
// adds it. Unknown keys in the file are an error, so a typo never passes
// silently; unknown GOCHAT_ variables are ignored because one environment
// often serves several services.
func Parse(fs *flag.FlagSet, args []string) error {
	var path string
	if fs.Lookup("config") == nil {
		fs.StringVar(&path, "config", "", "path of a YAML or JSON config file (flat map of flag names to values)")
	}
	// The command line wins, but the file path must be known before it is
	// applied, so look for -config first.
	path = findConfigArg(args, os.Getenv(EnvPrefix+"CONFIG"))
	if path != "" {
		if err := applyFile(fs, path); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := setValue(fs, f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s (-%s): %w", EnvName(f.Name), f.Name, err))
			}
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return fs.Parse(args)
}

func findConfigArg(args []string, fallback string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, p := range []string{"-config", "--config"} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(a, p+"=") {
				return strings.TrimPrefix(a, p+"=")
			}
		}
	}
	return fallback
}

func applyFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	// Values are read as the text written, not as YAML types: 0755,
	// 0x1f, 1e3 or 2026-01-02 would otherwise come back as 493, 31, 1000
	// or a time, which matters for secrets and paths.
	var m map[string]yaml.Node
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fs.Lookup(k) == nil {
			return fmt.Errorf("config file %s: unknown setting %q", path, k)
		}
		s, set, err := nodeText(m[k])
		if err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
		if !set {
			continue
		}
		if err := setValue(fs, k, s); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// setValue sets the flag called name to value. The flag package's own error
// says only "parse error" or "value out of range", and the command line
// adds the value and the flag; a value from the file or the environment
// gets the value and the kind of value wanted instead, with the parser's
// reason where it has one.
func setValue(fs *flag.FlagSet, name, value string) error {
	err := fs.Set(name, value)
	if err == nil {
		return nil
	}
	f := fs.Lookup(name)
	if f == nil {
		return err
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return &valueError{Value: value, Err: err}
	}
	var want string
	var reason error
	switch g.Get().(type) {
	case bool:
		want = "true or false"
		_, reason = strconv.ParseBool(value)
	case int, int64:
		want = "an integer"
		_, reason = strconv.ParseInt(value, 0, 64)
	case uint, uint64:
		want = "an integer of 0 or more"
		_, reason = strconv.ParseUint(value, 0, 64)
	case float64:
		want = "a number"
		_, reason = strconv.ParseFloat(value, 64)
	case time.Duration:
		want = "a duration such as 300ms, 30s or 1m30s"
		_, reason = time.ParseDuration(value)
	}
	if want == "" {
		// A flag.Value of the program's own: its error is its own text.
		return &valueError{Value: value, Err: err}
	}
	var ne *strconv.NumError
	if errors.As(reason, &ne) {
		// "invalid syntax" or "value out of range": the rest of the
		// strconv text repeats the value.
		reason = ne.Err
	}
	if reason == nil {
		// The value parsed here but not in the flag (an int too large for
		// a 32-bit int, say): the flag's own word is all there is.
		reason = err
	}
	return &valueError{Value: value, Want: want, Err: reason}
}

// valueError is a value from the file or the environment that its flag
// does not take.
type valueError struct {
	Value string
	// Want describes the values the flag takes; empty for a flag of the
	// program's own type, whose Err says it.
	Want string
	// Err is the parser's reason.
	Err error
}

func (e *valueError) Error() string {
	if e.Want == "" {
		return fmt.Sprintf("invalid value %q: %v", e.Value, e.Err)
	}
	return fmt.Sprintf("invalid value %q: want %s (%v)", e.Value, e.Want, e.Err)
}

func (e *valueError) Unwrap() error { return e.Err }

// nodeText returns a setting's value as written: a scalar's text, or a
// list's items joined with commas. An empty or null value (key: or
// key: ~) is not set: the flag keeps its default.
func nodeText(node yaml.Node) (string, bool, error) {
	n := resolve(&node)
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", false, nil
		}
		return n.Value, true, nil
	case yaml.SequenceNode:
		parts := make([]string, len(n.Content))
		for i, item := range n.Content {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode {
				return "", false, errors.New("a list may hold plain values only")
			}
			parts[i] = item.Value
		}
		return strings.Join(parts, ","), true, nil
	}
	return "", false, errors.New("want a value or a list of values")
}

// resolve returns the node an alias (*anchor) stands for, or n itself.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// List splits a comma-separated setting, dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Setting is a flag's name, with its dash, and its value, for Positive.
type Setting[T int | time.Duration] struct {
	Name  string
	Value T
}

// Positive refuses the first of settings that is not more than 0, naming
// the flag and its value ("-workers 0: must be more than 0"): a service
// checks its counts and durations with it before it contacts anything.
func Positive[T int | time.Duration](settings ...Setting[T]) error {
	for _, s := range settings {
		if s.Value <= 0 {
			return fmt.Errorf("%s %v: must be more than 0", s.Name, s.Value)
		}
	}
	return nil
}
