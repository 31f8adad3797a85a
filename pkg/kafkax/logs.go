package kafkax

import (
	"context"
	"log/slog"
	"strconv"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Why this file exists: librdkafka writes its own log lines
// ("%3|1795891776.176|FAIL|rdkafka#producer-1|...") straight to stderr,
// beside the services' log/slog output, so -log-format json still left
// unstructured lines in the stream. With go.logs.channel.enable=true
// (set by Common.base) librdkafka queues them instead, confluent-kafka-go
// hands them over on the client's Logs() channel, and kafkax logs each one
// with log/slog.
//
// Who reads the channel:
//   - clients kafkax creates itself (Producer, NewConsumer, the admin
//     client of EnsureTopics) get a channel of their own, made and closed
//     by confluent-kafka-go: it is closed when the client is closed, so the
//     goroutine that forwards it ends then too;
//   - clients that other packages create from ProducerConfig or
//     ConsumerConfig with kafka.NewProducer / kafka.NewConsumer cannot be
//     reached from here, so those configs name one shared channel
//     (go.logs.channel), read by one goroutine for the whole process that
//     logs to slog.Default(). confluent-kafka-go never closes a channel the
//     application gave it, so that goroutine is never stopped; it is one
//     per process, however many clients come and go. Using NewConsumer
//     instead of kafka.NewConsumer avoids it and logs to the caller's
//     logger.
//
// Lines librdkafka logs while a client is being closed (after
// confluent-kafka-go has stopped reading its log queue) are dropped. An
// operator who wants librdkafka's own stderr lines back sets
// go.logs.channel.enable=false in -kafka-config.

// logMsg is the slog message of every forwarded librdkafka line; the line
// itself is in the "message" attribute.
const logMsg = "librdkafka"

// slogLevel maps a librdkafka (syslog) level to a slog level: 0-3
// (emergency to error) are errors, 4 (warning) a warning, 5-6 (notice,
// info) info and 7 (debug) debug. librdkafka logs at 7 only when the
// operator sets its "debug" property; the service's -log-level must then
// be debug too for those lines to show.
func slogLevel(syslog int) slog.Level {
	switch {
	case syslog <= 3:
		return slog.LevelError
	case syslog == 4:
		return slog.LevelWarn
	case syslog <= 6:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// logEvent logs one librdkafka line.
func logEvent(log *slog.Logger, e kafka.LogEvent) {
	log.LogAttrs(context.Background(), slogLevel(e.Level), logMsg,
		slog.String("client", e.Name), slog.String("tag", e.Tag), slog.String("message", e.Message))
}

// forwardLogs logs every event of ch until ch is closed.
func forwardLogs(ch <-chan kafka.LogEvent, log *slog.Logger) {
	for e := range ch {
		logEvent(log, e)
	}
}

// forwardClientLogs starts a goroutine that logs the client's librdkafka
// lines to log until the client is closed, if the client has a logs
// channel of confluent-kafka-go's making: cfg is the configuration the
// client was created with. A channel the application supplied
// (go.logs.channel) is never closed by confluent-kafka-go, so it is left
// to whoever supplied it; without go.logs.channel.enable there is nothing
// to read. wg (may be nil) is done when the goroutine ends.
func forwardClientLogs(logs chan kafka.LogEvent, cfg kafka.ConfigMap, log *slog.Logger, wg *sync.WaitGroup) {
	if logs == nil {
		return
	}
	if _, own := cfg["go.logs.channel"]; own {
		return
	}
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg != nil {
			defer wg.Done()
		}
		forwardLogs(logs, log)
	}()
}

// shared is the logs channel named in the configs ProducerConfig and
// ConsumerConfig return, and the goroutine that reads it (see above).
var shared struct {
	once sync.Once
	ch   chan kafka.LogEvent
}

// sharedLogs returns the shared logs channel, starting its reader the
// first time. The reader looks up slog.Default() for each line, so the
// logger a service installs at start-up is used even for configs built
// before.
func sharedLogs() chan kafka.LogEvent {
	shared.once.Do(func() {
		shared.ch = make(chan kafka.LogEvent, 1000)
		go func() {
			for e := range shared.ch {
				logEvent(slog.Default(), e)
			}
		}()
	})
	return shared.ch
}

// isShared reports whether v is the shared logs channel. (A channel in a
// config is almost always the shared one, so going through sharedLogs,
// which may start the reader, costs nothing in practice and keeps the
// read of shared.ch ordered after its creation.)
func isShared(v kafka.ConfigValue) bool {
	ch, ok := v.(chan kafka.LogEvent)
	return ok && ch != nil && ch == sharedLogs()
}

// logsEnabled reports whether m turns the logs channel on.
// confluent-kafka-go itself takes only a bool; a string is read here too
// so that a string "false" is not taken for true.
func logsEnabled(m kafka.ConfigMap) bool {
	switch v := m["go.logs.channel.enable"].(type) {
	case bool:
		return v
	case string:
		b, err := strconv.ParseBool(v)
		return err == nil && b
	}
	return false
}

// withSharedLogs makes m, a config for a client some other package
// creates, send its librdkafka lines to the shared channel: a logs channel
// nobody reads would hold them (and, once its 10,000 slots are full,
// librdkafka's queue would grow for as long as the client lives) instead
// of writing them anywhere.
func withSharedLogs(m kafka.ConfigMap) kafka.ConfigMap {
	if _, own := m["go.logs.channel"]; own || !logsEnabled(m) {
		return m
	}
	m["go.logs.channel"] = sharedLogs()
	return m
}

// withoutSharedLogs returns a copy of cfg without the shared logs channel,
// for a client kafkax creates and reads the logs of itself.
func withoutSharedLogs(cfg kafka.ConfigMap) kafka.ConfigMap {
	m := make(kafka.ConfigMap, len(cfg))
	for k, v := range cfg {
		m[k] = v
	}
	if isShared(m["go.logs.channel"]) {
		delete(m, "go.logs.channel")
	}
	return m
}
