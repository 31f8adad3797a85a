package svc

import (
	"log/slog"
	"os"

	"github.com/gochat-im/gochat/pkg/obs"
)

func obsLogger(format, level, service string) (*slog.Logger, error) {
	return obs.NewLogger(os.Stderr, format, level, service)
}
