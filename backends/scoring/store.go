package main

import "sync"

// maxScores bounds the store: the demo backend runs for days under load tests
// and must not grow without limit.
const maxScores = 100_000

// store keeps scores in memory, evicting the oldest beyond its capacity. It is
// safe for concurrent use.
type store struct {
	mu     sync.RWMutex
	byID   map[string]score
	order  []string            // ring buffer of ids, in insertion order
	oldest int                 // index in order of the oldest id once order is full
	byUser map[string][]string // ids per user, oldest first
}

// newStore returns a store keeping at most capacity (> 0) scores.
func newStore(capacity int) *store {
	return &store{
		byID:   make(map[string]score),
		order:  make([]string, 0, capacity),
		byUser: make(map[string][]string),
	}
}

// add stores sc, evicting the oldest score if the store is full.
func (st *store) add(sc score) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.order) < cap(st.order) {
		st.order = append(st.order, sc.ID)
	} else {
		st.evict(st.order[st.oldest])
		st.order[st.oldest] = sc.ID
		st.oldest = (st.oldest + 1) % len(st.order)
	}
	st.byID[sc.ID] = sc
	st.byUser[sc.UserID] = append(st.byUser[sc.UserID], sc.ID)
}

// evict removes the score id, which is the oldest of the store and thus of
// its user too.
func (st *store) evict(id string) {
	user := st.byID[id].UserID
	delete(st.byID, id)
	if ids := st.byUser[user][1:]; len(ids) > 0 {
		st.byUser[user] = ids
	} else {
		delete(st.byUser, user)
	}
}

// get returns the score with the given id.
func (st *store) get(id string) (score, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	sc, ok := st.byID[id]
	return sc, ok
}

// byUserNewest returns at most limit scores of the user that keep accepts,
// newest first.
func (st *store) byUserNewest(userID string, limit int, keep func(score) bool) []score {
	st.mu.RLock()
	defer st.mu.RUnlock()
	ids := st.byUser[userID]
	out := make([]score, 0, min(limit, len(ids)))
	for i := len(ids) - 1; i >= 0 && len(out) < limit; i-- {
		if sc := st.byID[ids[i]]; keep(sc) {
			out = append(out, sc)
		}
	}
	return out
}
