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
	"strings"

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
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", EnvName(f.Name), err))
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
		if err := fs.Set(k, s); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

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
