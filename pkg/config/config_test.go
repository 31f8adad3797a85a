package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newFS() (*flag.FlagSet, *string, *int, *time.Duration) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	s := fs.String("listen-addr", "default", "")
	n := fs.Int("shards", 1, "")
	d := fs.Duration("idle-timeout", time.Second, "")
	return fs, s, n, d
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("listen-addr: fromfile\nshards: 8\nidle-timeout: 5s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCHAT_SHARDS", "16")
	fs, s, n, d := newFS()
	if err := Parse(fs, []string{"-config", file, "-idle-timeout", "7s"}); err != nil {
		t.Fatal(err)
	}
	if *s != "fromfile" || *n != 16 || *d != 7*time.Second {
		t.Fatalf("got %q %d %v; want file < env < flag", *s, *n, *d)
	}
}

func TestDefaultsAndEnvConfigPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	if err := os.WriteFile(file, []byte(`{"shards": 4}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCHAT_CONFIG", file)
	fs, s, n, _ := newFS()
	if err := Parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if *s != "default" || *n != 4 {
		t.Fatalf("got %q %d", *s, *n)
	}
}

func TestUnknownFileKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("shardz: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, _, _, _ := newFS()
	if err := Parse(fs, []string{"-config=" + file}); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestBadEnvValue(t *testing.T) {
	t.Setenv("GOCHAT_SHARDS", "many")
	fs, _, _, _ := newFS()
	if err := Parse(fs, nil); err == nil {
		t.Fatal("bad env value accepted")
	}
}

func TestList(t *testing.T) {
	got := List(" a, b,,c ")
	if len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("List = %q", got)
	}
}

// A file value reaches the flag as written, whatever YAML would make of it
// as a number, a date or null; an empty or null value leaves the default;
// a list joins its items with commas.
func TestFileValuesAsWritten(t *testing.T) {
	for in, want := range map[string]string{
		"0755": "0755", "0x1f2e": "0x1f2e", "1_000": "1_000", "1e3": "1e3",
		"12345678901234567890": "12345678901234567890", "2026-01-02": "2026-01-02",
		"'quoted: yes'": "quoted: yes", "true": "true", "": "default", "~": "default", "null": "default",
		"[a, 0755, '']": "a,0755,",
	} {
		file := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(file, []byte("listen-addr: "+in+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fs, s, _, _ := newFS()
		if err := Parse(fs, []string{"-config", file}); err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if *s != want {
			t.Errorf("file value %q: flag got %q, want %q", in, *s, want)
		}
	}
	// A value that is neither a scalar nor a list of scalars is an error.
	for _, in := range []string{"{a: 1}", "[[a]]"} {
		file := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(file, []byte("listen-addr: "+in+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fs, _, _, _ := newFS()
		if err := Parse(fs, []string{"-config", file}); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// A bad value from the environment or the file is reported with the value,
// the kind of value the flag takes and the parser's reason, and names the
// variable (and its flag) or the file and key.
func TestBadValueMessages(t *testing.T) {
	newSet := func() *flag.FlagSet {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.Duration("heartbeat", time.Second, "")
		fs.Int("shards", 1, "")
		fs.Int64("big", 1, "")
		fs.Uint("queue", 1, "")
		fs.Float64("ratio", 1, "")
		fs.Bool("standalone", false, "")
		fs.Func("mode", "", func(s string) error {
			if s != "a" {
				return errors.New("want a")
			}
			return nil
		})
		return fs
	}
	for _, tc := range []struct {
		name, value, want string
	}{
		{"heartbeat", "x", `invalid value "x": want a duration such as 300ms, 30s or 1m30s (time: invalid duration "x")`},
		{"heartbeat", "5", `invalid value "5": want a duration such as 300ms, 30s or 1m30s (time: missing unit in duration "5")`},
		{"heartbeat", "1d", `invalid value "1d": want a duration such as 300ms, 30s or 1m30s (time: unknown unit "d" in duration "1d")`},
		{"shards", "many", `invalid value "many": want an integer (invalid syntax)`},
		{"shards", "1.5", `invalid value "1.5": want an integer (invalid syntax)`},
		{"shards", "99999999999999999999", `invalid value "99999999999999999999": want an integer (value out of range)`},
		{"big", "x", `invalid value "x": want an integer (invalid syntax)`},
		{"queue", "-1", `invalid value "-1": want an integer of 0 or more (invalid syntax)`},
		{"ratio", "half", `invalid value "half": want a number (invalid syntax)`},
		{"standalone", "yes", `invalid value "yes": want true or false (invalid syntax)`},
		{"mode", "b", `invalid value "b": want a`},
	} {
		env := EnvName(tc.name)
		t.Run("env "+tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(env, tc.value)
			err := Parse(newSet(), nil)
			want := env + " (-" + tc.name + "): " + tc.want
			if err == nil || err.Error() != "environment "+want {
				t.Errorf("got %v\nwant environment %s", err, want)
			}
		})
		t.Run("file "+tc.name+"="+tc.value, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(file, []byte(tc.name+": '"+tc.value+"'\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Parse(newSet(), []string{"-config", file})
			want := "config file " + file + ": " + tc.name + ": " + tc.want
			if err == nil || err.Error() != want {
				t.Errorf("got %v\nwant %s", err, want)
			}
		})
	}
}

// Every bad variable is reported, not only the first.
func TestBadEnvValuesAllReported(t *testing.T) {
	t.Setenv("GOCHAT_SHARDS", "many")
	t.Setenv("GOCHAT_IDLE_TIMEOUT", "soon")
	fs, _, _, _ := newFS()
	err := Parse(fs, nil)
	if err == nil || !strings.Contains(err.Error(), `GOCHAT_SHARDS (-shards): invalid value "many"`) ||
		!strings.Contains(err.Error(), `GOCHAT_IDLE_TIMEOUT (-idle-timeout): invalid value "soon"`) {
		t.Fatalf("got %v", err)
	}
}

// Positive names the first setting that is not more than 0, counts and
// durations alike.
func TestPositive(t *testing.T) {
	if err := Positive(Setting[int]{"-workers", 1}, Setting[int]{"-max-inflight", 8}); err != nil {
		t.Fatalf("positive counts: %v", err)
	}
	if err := Positive(Setting[int]{"-workers", 4}, Setting[int]{"-max-inflight", 0}, Setting[int]{"-up", -1}); err == nil || err.Error() != "-max-inflight 0: must be more than 0" {
		t.Fatalf("a zero count: %v", err)
	}
	if err := Positive(Setting[time.Duration]{"-retry-base", -time.Second}); err == nil || err.Error() != "-retry-base -1s: must be more than 0" {
		t.Fatalf("a negative duration: %v", err)
	}
}
