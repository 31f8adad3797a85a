package ids

import "testing"

func TestP2P(t *testing.T) {
	if P2P("bob", "alice") != "p:alice:bob" || P2P("alice", "bob") != "p:alice:bob" {
		t.Fatal("P2P is not symmetric")
	}
	a, b, ok := ParseP2P("p:alice:bob")
	if !ok || a != "alice" || b != "bob" {
		t.Fatal(a, b, ok)
	}
	for _, bad := range []string{"", "p:", "p:alice", "p:bob:alice", "p:a:a", "g:x", "p:a:b:c", "p:a b:c"} {
		if _, _, ok := ParseP2P(bad); ok {
			t.Errorf("ParseP2P(%q) accepted", bad)
		}
	}
	if p, ok := Peer("p:alice:bob", "bob"); !ok || p != "alice" {
		t.Fatal("Peer")
	}
	if Member("p:alice:bob", "carol") {
		t.Fatal("carol is not a member")
	}
}

func TestValid(t *testing.T) {
	good := []string{"a", "alice", "user_1", "a.b-c@d"}
	bad := []string{"", "a:b", "a b", "ä", string(make([]byte, 65))}
	for _, s := range good {
		if !ValidUID(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range bad {
		if ValidUID(s) {
			t.Errorf("%q accepted", s)
		}
	}
	if !ValidConv("g:team1") || !ValidConv("p:a:b") || ValidConv("x:y") {
		t.Fatal("ValidConv")
	}
}
