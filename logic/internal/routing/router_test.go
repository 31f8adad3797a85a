package routing

import (
	"context"
	"fmt"
	"testing"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/pkg/discovery"
)

type allAlive struct{}

func (allAlive) Get(id string) (discovery.Gateway, bool)  { return discovery.Gateway{ID: id}, true }
func (allAlive) Confirm(_ context.Context, _ string) bool { return true }

// A lookup of more users than one dataproxy call may name is split into
// calls of at most MaxLookup, and finds every route.
func TestLookupSplitsLargeCalls(t *testing.T) {
	dp := dpfake.New()
	dp.LookupLimit = MaxLookup
	uids := make([]string, 2*MaxLookup+1)
	for i := range uids {
		uids[i] = fmt.Sprintf("u%d", i)
		dp.Routes = append(dp.Routes, &common.Route{Uid: uids[i], Device: "d", GatewayId: "gw1", ConnId: int64(i + 1)})
	}
	got, err := New(dp, allAlive{}).Lookup(context.Background(), uids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(uids) || dp.RouteLookups != 3 {
		t.Fatalf("%d users' routes in %d calls, want %d in 3", len(got), dp.RouteLookups, len(uids))
	}
}
