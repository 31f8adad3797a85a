package genset

import "testing"

func TestGenerations(t *testing.T) {
	s := New[int](2)
	s.Add(1, 2)
	if !s.Has(1) || !s.Has(2) || s.Has(3) {
		t.Fatal("fresh keys")
	}
	s.Add(3)       // cur full: {1,2} becomes old, cur = {3}
	if !s.Has(1) { // copied back to cur: {3,1}
		t.Fatal("a key of the old generation is still in the set")
	}
	s.Add(4) // cur full: old = {3,1}, cur = {4}; 2 is gone
	if s.Has(2) {
		t.Fatal("an unused key outlived two generations")
	}
	if !s.Has(1) || !s.Has(3) || !s.Has(4) {
		t.Fatal("recent keys lost")
	}
}

func TestDisabled(t *testing.T) {
	s := New[string](0)
	s.Add("a")
	if s.Has("a") {
		t.Fatal("a set of limit 0 holds nothing")
	}
}
