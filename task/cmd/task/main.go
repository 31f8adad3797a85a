// Command task runs GoChat's task service: it consumes the task topic and
// runs side jobs (the offline-push webhook, the message archive, content
// moderation) with retries, a dead-letter topic and at-least-once offsets.
// See internal/consumer.
//
// Every flag can also be set in the environment as GOCHAT_<FLAG> (for
// example -webhook-url is GOCHAT_WEBHOOK_URL) or in a config file (-config).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/pkg/config"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/rpcx"
	"github.com/gochat-im/gochat/pkg/svc"
	"github.com/gochat-im/gochat/task/internal/archive"
	"github.com/gochat-im/gochat/task/internal/backoff"
	"github.com/gochat-im/gochat/task/internal/consumer"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/gochat-im/gochat/task/internal/moderation"
	"github.com/gochat-im/gochat/task/internal/offlinepush"
)

// Partitions of the dead-letter topic when task creates it.
const deadPartitions = 1

type settings struct {
	common svc.Common

	group          string
	taskPartitions int
	workers        int
	maxInflight    int
	maxAttempts    int
	retryBase      time.Duration
	retryMax       time.Duration
	webhookURL     string
	archiveDir     string
	webhookSecret  string
	webhookTimeout time.Duration
	modURL         string
	modSecret      string
	modWords       string
	recallSecret   string
	shutdownGrace  time.Duration
	startupTimeout time.Duration

	// words is the -moderation-words list, read by check.
	words []string
}

func (s *settings) register(fs *flag.FlagSet) {
	s.common.Register(fs, "127.0.0.1:9192")
	s.common.RegisterKafka(fs)
	s.common.RegisterGC(fs, 32)
	fs.StringVar(&s.group, "group", "gochat.task", "Kafka consumer group of the task consumers")
	fs.IntVar(&s.taskPartitions, "task-partitions", 8, "partitions of the task topic when task creates it (an existing topic is left as it is); use the value of logic's -task-partitions")
	fs.IntVar(&s.workers, "workers", 16, "goroutines running task attempts concurrently")
	fs.IntVar(&s.maxInflight, "max-inflight", 1024, "tasks consumed and not finished (retries waiting included) before fetching pauses")
	fs.IntVar(&s.maxAttempts, "max-attempts", 5, "attempts per task before it goes to the dead-letter topic")
	fs.DurationVar(&s.retryBase, "retry-base", 200*time.Millisecond, "delay before the second attempt; doubles per attempt, with jitter (also spaces retries of a failed dead-letter write)")
	fs.DurationVar(&s.retryMax, "retry-max", 30*time.Second, "longest delay between two attempts; at least -retry-base")
	fs.StringVar(&s.webhookURL, "webhook-url", "", "offline-push webhook URL; empty acknowledges offline-push tasks without calling anything")
	fs.StringVar(&s.archiveDir, "archive-dir", "", "directory of the message archive (hourly JSON Lines files; logic -archive emits the tasks); empty acknowledges archive tasks without writing them")
	fs.StringVar(&s.webhookSecret, "webhook-secret", "", "HMAC-SHA256 key signing webhook bodies (X-GoChat-Signature); set it through GOCHAT_WEBHOOK_SECRET")
	fs.DurationVar(&s.webhookTimeout, "webhook-timeout", 5*time.Second, "timeout of one webhook attempt (offline push and moderation)")
	fs.StringVar(&s.modURL, "moderation-url", "", "moderation webhook URL, asked about every message logic -moderate emits; empty: no webhook")
	fs.StringVar(&s.modSecret, "moderation-secret", "", "HMAC-SHA256 key signing moderation webhook bodies (X-GoChat-Signature); set it through GOCHAT_MODERATION_SECRET")
	fs.StringVar(&s.modWords, "moderation-words", "", "file of blocked words or phrases, one per line (# comments): a message containing one, in any case, is recalled")
	fs.StringVar(&s.recallSecret, "recall-secret", "", "logic's -recall-secret (or its admin secret), for recalling what moderation rejects; set it through GOCHAT_RECALL_SECRET")
	fs.DurationVar(&s.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGINT/SIGTERM, how long in-flight tasks may finish before they are abandoned (and redone later)")
	fs.DurationVar(&s.startupTimeout, "startup-timeout", time.Minute, "how long to wait for Kafka at start")
}

func main() {
	var s settings
	fs := flag.NewFlagSet("task", flag.ExitOnError)
	s.register(fs)
	svc.Parse(fs, os.Args[1:])
	if err := s.check(); err != nil {
		fmt.Fprintln(os.Stderr, "task:", err)
		os.Exit(2)
	}

	log, err := s.common.Logger("task")
	if err != nil {
		fmt.Fprintln(os.Stderr, "task:", err)
		os.Exit(2)
	}
	if err := run(s, log); err != nil {
		log.Error("task service failed", "err", err)
		os.Exit(1)
	}
}

// check refuses flag values that have no meaning, rather than replacing
// them with defaults. It also reads the -moderation-words file into
// s.words, so that a missing or empty list, or a moderation job that could
// not recall anything, stops the service at once instead of after it has
// waited for Kafka.
func (s *settings) check() error {
	if err := config.Positive(
		config.Setting[int]{Name: "-task-partitions", Value: s.taskPartitions},
		config.Setting[int]{Name: "-workers", Value: s.workers},
		config.Setting[int]{Name: "-max-inflight", Value: s.maxInflight},
		config.Setting[int]{Name: "-max-attempts", Value: s.maxAttempts},
	); err != nil {
		return err
	}
	if err := config.Positive(
		config.Setting[time.Duration]{Name: "-retry-base", Value: s.retryBase},
		config.Setting[time.Duration]{Name: "-retry-max", Value: s.retryMax},
		config.Setting[time.Duration]{Name: "-webhook-timeout", Value: s.webhookTimeout},
		config.Setting[time.Duration]{Name: "-shutdown-grace", Value: s.shutdownGrace},
		config.Setting[time.Duration]{Name: "-startup-timeout", Value: s.startupTimeout},
	); err != nil {
		return err
	}
	if s.retryMax < s.retryBase {
		return fmt.Errorf("-retry-max %v: must be at least -retry-base (%v)", s.retryMax, s.retryBase)
	}
	s.words = nil
	if s.modWords != "" {
		words, err := moderation.LoadWords(s.modWords)
		var pe *fs.PathError
		if errors.As(err, &pe) {
			// "open <path>: no such file or directory" says it all.
			err = pe
		}
		if err != nil {
			return fmt.Errorf("-moderation-words %s: %w", s.modWords, err)
		}
		if len(words) == 0 {
			return fmt.Errorf("-moderation-words %s: holds no word", s.modWords)
		}
		s.words = words
	}
	if (s.modURL != "" || s.modWords != "") && s.recallSecret == "" {
		// The job recalls what it rejects, and logic takes a recall only
		// with its recall or admin secret.
		return errors.New("-moderation-url and -moderation-words need -recall-secret (logic's -recall-secret or its admin secret)")
	}
	return nil
}

func run(s settings, log *slog.Logger) error {
	ctx, stop := obs.SignalContext()
	defer stop()
	s.common.StartGCFloor(ctx)

	kcommon, err := s.common.KafkaCommon()
	if err != nil {
		return err
	}
	reg := obs.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		return err
	}
	// The jobs are built before the service waits for Kafka (building them
	// waits for nothing): a webhook URL that is not one, or an archive
	// directory that cannot be made, stops the service at once.
	push, err := offlinepush.New(offlinepush.Config{
		URL: s.webhookURL, Secret: s.webhookSecret, Timeout: s.webhookTimeout, MaxConns: s.workers,
	}, m)
	if err != nil {
		return err
	}
	defer push.Close()
	if s.webhookURL == "" {
		log.Warn("no -webhook-url: offline-push tasks are acknowledged without a call")
	}
	jobs := job.NewRegistry()
	if err := jobs.Register(events.TaskKind_OFFLINE_PUSH, push); err != nil {
		return err
	}
	arch, err := archive.New(s.archiveDir)
	if err != nil {
		return err
	}
	// Closed after the consumer: the lines of tasks in flight are synced.
	defer func() {
		if err := arch.Close(); err != nil {
			log.Error("closing the archive", "err", err)
		}
	}()
	var archiveJob job.Handler = arch
	if arch == nil {
		archiveJob = job.HandlerFunc(func(context.Context, *events.TaskRecord) error { return job.ErrSkipped })
	}
	if err := jobs.Register(events.TaskKind_ARCHIVE, archiveJob); err != nil {
		return err
	}

	mod, err := newModeration(s, m)
	if err != nil {
		return err
	}
	defer mod.Close()
	if err := jobs.Register(events.TaskKind_MODERATE, mod); err != nil {
		return err
	}
	admin, err := obs.StartAdmin(s.common.AdminListen, reg, log)
	if err != nil {
		return err
	}
	defer admin.Close()

	tctx, cancel := context.WithTimeout(ctx, s.startupTimeout)
	err = kafkax.EnsureTopics(tctx, kcommon,
		kafkax.TopicSpec{Name: kafkax.TopicTask, Partitions: s.taskPartitions},
		kafkax.TopicSpec{Name: kafkax.TopicTaskDead, Partitions: deadPartitions})
	cancel()
	if err != nil {
		return err
	}

	producer, err := kafkax.NewProducer(kcommon, log)
	if err != nil {
		return err
	}
	// Closed after the consumer, so dead-letter writes in flight finish.
	defer producer.Close()

	// A wrong recall secret stops the service here rather than leaving
	// every rejected message to fail later; logic not answering yet is
	// only worth a warning (the job retries).
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = mod.CheckAccess(cctx)
	cancel()
	switch {
	case errors.Is(err, moderation.ErrUnauthorized):
		return err
	case err != nil:
		log.Warn("could not check the recall secret with logic; moderation recalls are retried until it answers", "err", err)
	}

	cons, err := consumer.New(consumer.Config{
		Kafka:         kcommon,
		Group:         s.group,
		Workers:       s.workers,
		MaxInflight:   s.maxInflight,
		MaxAttempts:   s.maxAttempts,
		Backoff:       backoff.Policy{Base: s.retryBase, Max: s.retryMax},
		ShutdownGrace: s.shutdownGrace,
		// Ready once consuming, and not while a dead-letter write keeps
		// failing.
		OnReady: admin.SetReady,
	}, jobs, producer, m, log)
	if err != nil {
		return err
	}
	log.Info("task service started", "admin", admin.Addr(), "brokers", kcommon.Brokers)
	err = cons.Run(ctx)
	admin.SetReady(false)
	return err
}

// newModeration builds the moderation job; with a judge configured it also
// builds the Kitex client of logic (found through etcd) that recalls what
// the judge rejects.
func newModeration(s settings, m *metrics.Metrics) (*moderation.Job, error) {
	cfg := moderation.Config{URL: s.modURL, Secret: s.modSecret, Timeout: s.webhookTimeout, MaxConns: s.workers, RecallSecret: s.recallSecret}
	cfg.Words = s.words // read by check
	if cfg.URL != "" || len(cfg.Words) > 0 {
		opts, err := rpcx.ClientOptions(rpcx.ClientConfig{Service: rpcx.LogicService, Etcd: s.common.EtcdEndpoints(),
			Timeout: 15 * time.Second, Caller: "gochat.task"})
		if err != nil {
			return nil, err
		}
		c, err := logicsvc.NewClient(rpcx.LogicService, opts...)
		if err != nil {
			return nil, fmt.Errorf("logic client: %w", err)
		}
		cfg.Logic = logicRecaller{c}
	}
	return moderation.New(cfg, m)
}

// logicRecaller is the Kitex client of logic as a moderation.Recaller.
type logicRecaller struct{ c logicsvc.Client }

func (l logicRecaller) Recall(ctx context.Context, req *logic.RecallReq) (*logic.RecallResp, error) {
	return l.c.Recall(ctx, req)
}
