package obs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudwego/kitex/pkg/klog"
)

// Why this file exists: Kitex logs through its own package klog, whose
// default logger writes "2026/11/28 18:26:59.151047 middlewares.go:164:
// [Warn] KITEX: ..." straight to stderr, beside the services' log/slog
// output, so -log-format json still left unstructured lines in the
// stream. Klog is a klog.FullLogger that hands every line to a slog
// logger instead; svc.Common.Logger installs it with klog.SetLogger.

// KlogAttr is the attribute every line from Kitex carries, so operators
// can pick them out (lib=kitex).
var KlogAttr = slog.String("lib", "kitex")

// Klog is a klog.FullLogger that writes to a slog logger. klog's levels
// map to slog's as Trace and Debug → Debug, Info and Notice → Info, Warn →
// Warn, Error → Error, and Fatal → Error with the attribute fatal=true,
// after which the process exits with status 1, as klog's default logger
// does. A line is written when its klog level is at least the one of
// SetLevel (klog.LevelInfo at first, as in klog) and the slog logger is
// enabled for its slog level: both filter.
type Klog struct {
	log   *slog.Logger
	level atomic.Int64 // a klog.Level
	// exit ends the process after a Fatal line (os.Exit; tests replace it).
	exit func(code int)
}

var _ klog.FullLogger = (*Klog)(nil)

// NewKlog returns a Klog writing to log, each line with KlogAttr.
func NewKlog(log *slog.Logger) *Klog {
	k := &Klog{log: log.With(KlogAttr), exit: os.Exit}
	k.level.Store(int64(klog.LevelInfo))
	return k
}

// klogSlogLevel maps a klog level to a slog level; levels klog does not
// define go to the nearest end.
func klogSlogLevel(lv klog.Level) slog.Level {
	switch {
	case lv <= klog.LevelDebug:
		return slog.LevelDebug
	case lv <= klog.LevelNotice:
		return slog.LevelInfo
	case lv == klog.LevelWarn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// SetLevel drops the lines of a klog level below lv.
func (k *Klog) SetLevel(lv klog.Level) { k.level.Store(int64(lv)) }

// Level is the level of SetLevel.
func (k *Klog) Level() klog.Level { return klog.Level(k.level.Load()) }

// SetOutput does nothing: lines go to the slog logger's handler, whose
// writer is the one to change.
func (k *Klog) SetOutput(io.Writer) {}

// logf writes one line: format is nil for the Sprint-style methods. It
// must be called by an exported method of Klog, itself called by one of
// klog's package functions (klog.Warnf and the like, which is how Kitex
// logs), for the line's source to be Kitex's call site.
func (k *Klog) logf(ctx context.Context, lv klog.Level, format *string, v []any) {
	if lv >= k.Level() {
		if ctx == nil {
			ctx = context.Background()
		}
		sl := klogSlogLevel(lv)
		if k.log.Enabled(ctx, sl) {
			var msg string
			if format != nil {
				msg = fmt.Sprintf(*format, v...)
			} else {
				msg = fmt.Sprint(v...)
			}
			var pcs [1]uintptr
			// Skip runtime.Callers, logf, the Klog method and klog's
			// package function.
			runtime.Callers(4, pcs[:])
			r := slog.NewRecord(time.Now(), sl, strings.TrimSuffix(msg, "\n"), pcs[0])
			if lv >= klog.LevelFatal {
				r.AddAttrs(slog.Bool("fatal", true))
			}
			_ = k.log.Handler().Handle(ctx, r)
		}
	}
	// Callers of Fatal do not expect it to return, even when the line was
	// filtered out.
	if lv >= klog.LevelFatal {
		k.exit(1)
	}
}

// The methods below log at the klog level they are named after; see Klog
// for what each becomes.

func (k *Klog) Trace(v ...any) { k.logf(context.Background(), klog.LevelTrace, nil, v) }

func (k *Klog) Debug(v ...any) { k.logf(context.Background(), klog.LevelDebug, nil, v) }

func (k *Klog) Info(v ...any) { k.logf(context.Background(), klog.LevelInfo, nil, v) }

func (k *Klog) Notice(v ...any) { k.logf(context.Background(), klog.LevelNotice, nil, v) }

func (k *Klog) Warn(v ...any) { k.logf(context.Background(), klog.LevelWarn, nil, v) }

func (k *Klog) Error(v ...any) { k.logf(context.Background(), klog.LevelError, nil, v) }

func (k *Klog) Fatal(v ...any) { k.logf(context.Background(), klog.LevelFatal, nil, v) }

func (k *Klog) Tracef(format string, v ...any) {
	k.logf(context.Background(), klog.LevelTrace, &format, v)
}

func (k *Klog) Debugf(format string, v ...any) {
	k.logf(context.Background(), klog.LevelDebug, &format, v)
}

func (k *Klog) Infof(format string, v ...any) {
	k.logf(context.Background(), klog.LevelInfo, &format, v)
}

func (k *Klog) Noticef(format string, v ...any) {
	k.logf(context.Background(), klog.LevelNotice, &format, v)
}

func (k *Klog) Warnf(format string, v ...any) {
	k.logf(context.Background(), klog.LevelWarn, &format, v)
}

func (k *Klog) Errorf(format string, v ...any) {
	k.logf(context.Background(), klog.LevelError, &format, v)
}

func (k *Klog) Fatalf(format string, v ...any) {
	k.logf(context.Background(), klog.LevelFatal, &format, v)
}

func (k *Klog) CtxTracef(ctx context.Context, format string, v ...any) {
	k.logf(ctx, klog.LevelTrace, &format, v)
}

func (k *Klog) CtxDebugf(ctx context.Context, format string, v ...any) {
	k.logf(ctx, klog.LevelDebug, &format, v)
}

func (k *Klog) CtxInfof(ctx context.Context, format string, v ...any) {
	k.logf(ctx, klog.LevelInfo, &format, v)
}

func (k *Klog) CtxNoticef(ctx context.Context, format string, v ...any) {
	k.logf(ctx, klog.LevelNotice, &format, v)
}

func (k *Klog) CtxWarnf(ctx context.Context, format string, v ...any) {
	k.logf(ctx, klog.LevelWarn, &format, v)
}

func (k *Klog) CtxErrorf(ctx context.Context, format string, v ...any) {
	k.logf(ctx, klog.LevelError, &format, v)
}

func (k *Klog) CtxFatalf(ctx context.Context, format string, v ...any) {
	k.logf(ctx, klog.LevelFatal, &format, v)
}
