package config

import (
	"flag"
	"os"
	"path/filepath"
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
