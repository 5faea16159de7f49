package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestStore(t *testing.T) {
	st := newStore(3)
	add := func(id, user string) { st.add(score{ID: id, UserID: user}) }
	ids := func(scores []score) string {
		var out []string
		for _, sc := range scores {
			out = append(out, sc.ID)
		}
		return strings.Join(out, ",")
	}
	add("a1", "alice")
	add("b1", "bob")
	add("a2", "alice")
	if got := ids(st.byUserNewest("alice", 10, all)); got != "a2,a1" {
		t.Errorf("alice = %s, want a2,a1", got)
	}
	if got := ids(st.byUserNewest("alice", 1, all)); got != "a2" {
		t.Errorf("alice limit 1 = %s, want a2", got)
	}

	add("a3", "alice") // evicts a1
	add("c1", "carol") // evicts b1, bob's only score
	for id, want := range map[string]bool{"a1": false, "b1": false, "a2": true, "a3": true, "c1": true} {
		if _, ok := st.get(id); ok != want {
			t.Errorf("get(%s) found = %v, want %v", id, ok, want)
		}
	}
	if got := ids(st.byUserNewest("alice", 10, all)); got != "a3,a2" {
		t.Errorf("alice after eviction = %s, want a3,a2", got)
	}
	if _, ok := st.byUser["bob"]; ok || len(st.byID) != 3 {
		t.Errorf("store holds %d scores and bob = %v, want 3 and no bob", len(st.byID), st.byUser["bob"])
	}
	if got := st.byUserNewest("nobody", 5, all); got == nil || len(got) != 0 {
		t.Errorf("unknown user = %#v, want an empty non-nil slice", got)
	}
}

func TestStoreConcurrent(t *testing.T) {
	st := newStore(50)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("w%d-%d", w, i)
				st.add(score{ID: id, UserID: fmt.Sprint(w)})
				st.get(id)
				st.byUserNewest(fmt.Sprint(w), 10, all)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, ids := range st.byUser {
		total += len(ids)
	}
	if len(st.byID) != 50 || total != 50 {
		t.Errorf("store holds %d scores, %d in user lists; want 50 and 50", len(st.byID), total)
	}
}

func all(score) bool { return true }
