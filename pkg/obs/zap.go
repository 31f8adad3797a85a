package obs

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Why this file exists: the etcd client (go.etcd.io/etcd/client/v3) logs
// with zap, and without a logger in its clientv3.Config it builds its own,
// which writes zap's JSON (other keys than slog's: "level":"warn",
// "ts", "caller", "msg") to stderr. ZapCore is a zapcore.Core that hands
// every entry to a slog logger instead, so those lines come out in the
// service's format; EtcdLogger is the logger every clientv3.Config the
// project makes gets (package discovery, package rpcx).

// EtcdAttr is the attribute every line from an etcd client carries, so
// operators can pick them out (lib=etcd).
var EtcdAttr = slog.String("lib", "etcd")

// EtcdLogger returns the logger for a clientv3.Config: it writes to log
// (slog.Default() when nil) with EtcdAttr.
func EtcdLogger(log *slog.Logger) *zap.Logger {
	if log == nil {
		log = slog.Default()
	}
	return NewZapLogger(log.With(EtcdAttr))
}

// NewZapLogger returns a zap logger writing to log (slog.Default() when
// nil) through a ZapCore.
func NewZapLogger(log *slog.Logger) *zap.Logger {
	return zap.New(NewZapCore(log))
}

// NewZapCore returns a zapcore.Core that writes each entry to log
// (slog.Default() when nil) as one slog record: the entry's time, level
// and message, then these attributes: "logger" with the zap logger's name
// if it has one, "zap_level" for levels slog has no name for (dpanic,
// panic, fatal: written at slog's Error level), the fields of With and of
// the entry in order (a zap namespace becomes a slog group, an object
// field a group, an array field a []any), and "stack" with the entry's
// stack trace if it has one. zap levels map to slog's as Debug → Debug,
// Info → Info, Warn → Warn and Error and above → Error; an entry is
// written when log is enabled for its slog level. Panicking or exiting
// after a Panic or Fatal entry is zap's Logger's business, as with any
// core.
func NewZapCore(log *slog.Logger) zapcore.Core {
	if log == nil {
		log = slog.Default()
	}
	return &zapCore{log: log}
}

type zapCore struct {
	log *slog.Logger
	// ctx holds the fields of With.
	ctx attrEncoder
}

// zapSlogLevel maps a zap level to a slog level.
func zapSlogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *zapCore) Enabled(l zapcore.Level) bool {
	return c.log.Enabled(context.Background(), zapSlogLevel(l))
}

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	n := &zapCore{log: c.log, ctx: c.ctx.clone()}
	for _, f := range fields {
		f.AddTo(&n.ctx)
	}
	return n
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	var pc uintptr
	if e.Caller.Defined {
		pc = e.Caller.PC
	}
	r := slog.NewRecord(e.Time, zapSlogLevel(e.Level), e.Message, pc)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	if e.Level > zapcore.ErrorLevel {
		r.AddAttrs(slog.String("zap_level", e.Level.String()))
	}
	enc := c.ctx.clone()
	for _, f := range fields {
		f.AddTo(&enc)
	}
	r.AddAttrs(enc.attrs()...)
	if e.Stack != "" {
		r.AddAttrs(slog.String("stack", e.Stack))
	}
	return c.log.Handler().Handle(context.Background(), r)
}

// Sync does nothing: slog handlers do not buffer.
func (c *zapCore) Sync() error { return nil }

// attrEncoder is a zapcore.ObjectEncoder that collects zap fields as slog
// attributes, in order.
type attrEncoder struct {
	cur []slog.Attr
	// open are the namespaces opened so far, outermost first: each holds
	// its key and the attributes of the level around it.
	open []namespace
}

type namespace struct {
	key   string
	outer []slog.Attr
}

var _ zapcore.ObjectEncoder = (*attrEncoder)(nil)

// clone returns a copy that shares no memory with e.
func (e *attrEncoder) clone() attrEncoder {
	n := attrEncoder{cur: slices.Clone(e.cur)}
	if len(e.open) > 0 {
		n.open = make([]namespace, len(e.open))
		for i, ns := range e.open {
			n.open[i] = namespace{key: ns.key, outer: slices.Clone(ns.outer)}
		}
	}
	return n
}

// attrs returns the attributes collected, each open namespace closed into
// a group. e must not be used after.
func (e *attrEncoder) attrs() []slog.Attr {
	cur := e.cur
	for i := len(e.open) - 1; i >= 0; i-- {
		ns := e.open[i]
		cur = append(ns.outer, slog.Attr{Key: ns.key, Value: slog.GroupValue(cur...)})
	}
	e.cur, e.open = nil, nil
	return cur
}

func (e *attrEncoder) add(a slog.Attr) { e.cur = append(e.cur, a) }

func (e *attrEncoder) OpenNamespace(key string) {
	e.open = append(e.open, namespace{key: key, outer: e.cur})
	e.cur = nil
}

func (e *attrEncoder) AddArray(key string, m zapcore.ArrayMarshaler) error {
	// zapcore's map encoder turns an array into a []any (of maps, for
	// arrays of objects).
	me := zapcore.NewMapObjectEncoder()
	err := me.AddArray(key, m)
	e.add(slog.Any(key, me.Fields[key]))
	return err
}

func (e *attrEncoder) AddObject(key string, m zapcore.ObjectMarshaler) error {
	var sub attrEncoder
	err := m.MarshalLogObject(&sub)
	e.add(slog.Attr{Key: key, Value: slog.GroupValue(sub.attrs()...)})
	return err
}

func (e *attrEncoder) AddReflected(key string, v any) error {
	e.add(slog.Any(key, v))
	return nil
}

func (e *attrEncoder) AddBinary(key string, v []byte) { e.add(slog.Any(key, slices.Clone(v))) }
func (e *attrEncoder) AddByteString(key string, v []byte) {
	e.add(slog.String(key, string(v)))
}
func (e *attrEncoder) AddBool(key string, v bool) { e.add(slog.Bool(key, v)) }

// Complex numbers are written as text: encoding/json (slog's JSON
// handler) cannot encode them.
func (e *attrEncoder) AddComplex128(key string, v complex128) {
	e.add(slog.String(key, fmt.Sprint(v)))
}
func (e *attrEncoder) AddComplex64(key string, v complex64) {
	e.add(slog.String(key, fmt.Sprint(v)))
}
func (e *attrEncoder) AddDuration(key string, v time.Duration) { e.add(slog.Duration(key, v)) }
func (e *attrEncoder) AddFloat64(key string, v float64)        { e.add(slog.Float64(key, v)) }
func (e *attrEncoder) AddFloat32(key string, v float32)        { e.add(slog.Float64(key, float64(v))) }
func (e *attrEncoder) AddInt(key string, v int)                { e.add(slog.Int(key, v)) }
func (e *attrEncoder) AddInt64(key string, v int64)            { e.add(slog.Int64(key, v)) }
func (e *attrEncoder) AddInt32(key string, v int32)            { e.add(slog.Int64(key, int64(v))) }
func (e *attrEncoder) AddInt16(key string, v int16)            { e.add(slog.Int64(key, int64(v))) }
func (e *attrEncoder) AddInt8(key string, v int8)              { e.add(slog.Int64(key, int64(v))) }
func (e *attrEncoder) AddString(key, v string)                 { e.add(slog.String(key, v)) }
func (e *attrEncoder) AddTime(key string, v time.Time)         { e.add(slog.Time(key, v)) }
func (e *attrEncoder) AddUint(key string, v uint)              { e.add(slog.Uint64(key, uint64(v))) }
func (e *attrEncoder) AddUint64(key string, v uint64)          { e.add(slog.Uint64(key, v)) }
func (e *attrEncoder) AddUint32(key string, v uint32)          { e.add(slog.Uint64(key, uint64(v))) }
func (e *attrEncoder) AddUint16(key string, v uint16)          { e.add(slog.Uint64(key, uint64(v))) }
func (e *attrEncoder) AddUint8(key string, v uint8)            { e.add(slog.Uint64(key, uint64(v))) }
func (e *attrEncoder) AddUintptr(key string, v uintptr)        { e.add(slog.Uint64(key, uint64(v))) }
