package kafkax

import (
	"log/slog"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// NewConsumer creates a confluent-kafka-go consumer from cfg (normally
// Common.ConsumerConfig's, adjusted by the caller) whose librdkafka log
// lines go to log (slog.Default() if nil) until the consumer is closed:
// confluent-kafka-go closes the consumer's logs channel in Close, which
// ends the goroutine reading it. Use it instead of kafka.NewConsumer, whose
// consumers log through the process-wide goroutine to slog.Default()
// (logs.go). cfg is not modified.
func NewConsumer(cfg kafka.ConfigMap, log *slog.Logger) (*kafka.Consumer, error) {
	if log == nil {
		log = slog.Default()
	}
	m := withoutSharedLogs(cfg)
	c, err := kafka.NewConsumer(&m)
	if err != nil {
		return nil, err
	}
	forwardClientLogs(c.Logs(), m, log, nil)
	return c, nil
}
