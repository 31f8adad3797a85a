// Package users answers "does this user exist?" for the send path without a
// dataproxy call per message: known users are cached for a while. Unknown
// users are not cached, so a user created a moment ago is found at once.
//
// Cache is safe for concurrent use.
package users

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpclient "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
)

// Cache remembers users known to exist.
type Cache struct {
	dp  dpclient.Client
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	known map[string]time.Time // uid -> expiry
}

// New returns a cache over dp keeping each user for ttl, at most max users
// (when full it starts over, which only costs lookups).
func New(dp dpclient.Client, ttl time.Duration, max int) *Cache {
	return &Cache{dp: dp, ttl: ttl, max: max, now: time.Now, known: map[string]time.Time{}}
}

// Add records uids as existing (after the caller created them).
func (c *Cache) Add(uids ...string) {
	exp := c.now().Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.known)+len(uids) > c.max {
		c.known = make(map[string]time.Time, len(uids))
	}
	for _, u := range uids {
		c.known[u] = exp
	}
}

// Existing returns the subset of uids that exist, asking dataproxy about
// those not cached in one call.
func (c *Cache) Existing(ctx context.Context, uids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(uids))
	var missing []string
	now := c.now()
	c.mu.Lock()
	for _, u := range uids {
		if exp, ok := c.known[u]; ok && now.Before(exp) {
			out[u] = true
		} else if !out[u] {
			missing = append(missing, u)
		}
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	missing = dedupe(missing)
	for len(missing) > 0 {
		n := min(len(missing), maxLookup)
		resp, err := c.dp.GetUsers(ctx, &dataproxy.GetUsersReq{Uids: missing[:n]})
		if err != nil {
			return nil, fmt.Errorf("get users: %w", err)
		}
		found := make([]string, 0, len(resp.Users))
		for _, u := range resp.Users {
			out[u.Uid] = true
			found = append(found, u.Uid)
		}
		c.Add(found...)
		missing = missing[n:]
	}
	return out, nil
}

// maxLookup is the most users one GetUsers call names, well under what
// dataproxy accepts in one call (dataproxy.MAX_BATCH).
const maxLookup = 500

func dedupe(s []string) []string {
	seen := make(map[string]struct{}, len(s))
	out := s[:0]
	for _, v := range s {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}
