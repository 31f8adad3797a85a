package users

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gochat-im/gochat/logic/internal/dpfake"
)

// Users not cached are asked for in calls of at most maxLookup, so a large
// batch does not exceed what dataproxy accepts in one call.
func TestExistingSplitsLargeCalls(t *testing.T) {
	uids := make([]string, 2*maxLookup+1)
	for i := range uids {
		uids[i] = fmt.Sprintf("u%d", i)
	}
	dp := dpfake.New(uids[1:]...) // u0 does not exist
	dp.LookupLimit = maxLookup
	got, err := New(dp, time.Hour, 10_000).Existing(context.Background(), append(uids, "u1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(uids)-1 || got["u0"] || !got["u1"] {
		t.Fatalf("%d users exist, want %d without u0", len(got), len(uids)-1)
	}
}
