package stack

import (
	"net"
	"strconv"
	"testing"

	"github.com/gochat-im/gochat/pkg/ports"
)

// fill keeps set ports and gives every other one a distinct port that is
// free and below the kernel's ephemeral range, where no outgoing
// connection can take it before the service binds it.
func TestFillPicksPortsBelowTheEphemeralRange(t *testing.T) {
	lo := ports.EphemeralLow()
	if lo-ports.Floor < 1000 {
		t.Fatalf("this machine's ephemeral range starts at %d: no room below it to test", lo)
	}
	for range 20 {
		p := Ports{Logic: 12345}
		if err := p.fill("127.0.0.1", 3); err != nil {
			t.Fatal(err)
		}
		if p.Logic != 12345 {
			t.Fatalf("set port changed to %d", p.Logic)
		}
		all := []int{p.Etcd, p.EtcdPeer, p.Kafka, p.Redis, p.LogicAdmin, p.DataProxy, p.DataProxyAdmin, p.TaskAdmin}
		all = append(all, p.Gateway...)
		all = append(all, p.GatewayAdmin...)
		if len(all) != 14 {
			t.Fatalf("%d ports, want 14", len(all))
		}
		seen := map[int]bool{p.Logic: true}
		for _, port := range all {
			if port < ports.Floor || port >= lo {
				t.Fatalf("port %d outside [%d, %d)", port, ports.Floor, lo)
			}
			if seen[port] {
				t.Fatalf("port %d picked twice: %+v", port, p)
			}
			seen[port] = true
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				t.Fatalf("picked port %d is not free: %v", port, err)
			}
			l.Close()
		}
	}
}
