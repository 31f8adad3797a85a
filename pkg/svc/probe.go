package svc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// ProbeFlag names the flag that turns a service binary into a health
// probe of itself: it asks the /readyz of the -admin-listen address the
// same settings (flags, GOCHAT_ variables, config file) give the service,
// prints the answer and exits 0 if ready, 1 if not, starting nothing.
// Container images carry no curl or wget, so a health check runs the
// service's own binary: `gochat-service -probe`.
const ProbeFlag = "probe"

// probeTimeout bounds one probe; container runtimes time the check out
// themselves too.
const probeTimeout = 3 * time.Second

// Probe asks the /readyz endpoint of the admin server listening on
// adminListen and returns the exit status: 0 ready, 1 not ready or not
// reachable. A wildcard or empty host (":9191", "0.0.0.0:9191") is asked
// on loopback, where the probe runs beside the service. Its one line of
// output goes to out.
func Probe(ctx context.Context, adminListen string, out io.Writer) int {
	if adminListen == "" {
		fmt.Fprintln(out, "probe: -admin-listen is empty: this service has no admin server to ask")
		return 1
	}
	host, port, err := net.SplitHostPort(adminListen)
	if err != nil {
		fmt.Fprintf(out, "probe: -admin-listen %q: %v\n", adminListen, err)
		return 1
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(out, "probe: %v\n", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(out, "probe: %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	fmt.Fprintf(out, "probe: %s: %s %s\n", url, resp.Status, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
