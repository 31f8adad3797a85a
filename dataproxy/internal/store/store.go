package store

import (
	"context"
	"errors"
	"fmt"
)

// Store is what the dataproxy handler needs from durable storage. Errors that
// carry a client-facing meaning are *errcode.Error values (see the method
// docs); any other error means the database failed and the call may be
// retried.
type Store interface {
	// AppendMessages validates each item and stores the valid ones, in
	// order, in one transaction: all of them or none. results[i] answers
	// items[i]. An invalid item gets ErrorCode/ErrorMessage and does not
	// stop the others. An item whose (conv, sender, client msg id) was
	// stored before, by an earlier call or earlier in the same batch, is
	// not stored again: its result carries the original seq and time with
	// Duplicate set. An error return means nothing was stored.
	AppendMessages(ctx context.Context, items []AppendItem) ([]AppendResult, error)

	// SyncMessages returns the messages of conv with seq > afterSeq in
	// ascending order, at most limit of them (0 means DefaultSyncLimit, more
	// than MaxSyncLimit is cut to MaxSyncLimit). An unknown conversation is
	// errcode.ConvNotFound; a malformed id or negative argument is
	// errcode.BadField.
	SyncMessages(ctx context.Context, conv string, afterSeq int64, limit int) (SyncResult, error)

	// ListConversations returns uid's conversations, the most recently
	// updated first; limit 0 means DefaultConvLimit, more than MaxConvLimit
	// is cut to MaxConvLimit.
	ListConversations(ctx context.Context, uid string, limit int) ([]Conversation, error)

	// UpsertUsers creates the users that do not exist yet (existing ones are
	// left unchanged) and returns how many were created. A malformed uid or
	// name rejects the whole call with errcode.BadField.
	UpsertUsers(ctx context.Context, users []User) (int, error)

	// GetUsers returns those of uids that exist, in the order asked.
	GetUsers(ctx context.Context, uids []string) ([]User, error)

	// Close releases the database handles.
	Close() error
}

// Migrator is implemented by stores with a versioned schema.
type Migrator interface {
	// Migrate applies every migration the database lacks.
	Migrate(ctx context.Context) error
	// SchemaVersion returns the database's schema version (0 for an empty
	// database) and the newest version this binary knows.
	SchemaVersion(ctx context.Context) (current, latest int, err error)
}

// ErrNoDatabase is returned by a read-only open (or an open that may not
// create the database) when the database does not exist.
var ErrNoDatabase = errors.New("database does not exist")

// Limits of the API.
const (
	DefaultMaxBody   = 64 << 10
	MaxMaxBody       = 16<<20 - 1 // a MySQL MEDIUMBLOB
	MaxClientMsgID   = 64
	MaxContentType   = 64
	MaxUserName      = 255 // characters
	DefaultSyncLimit = 50
	MaxSyncLimit     = 200
	DefaultConvLimit = 100
	MaxConvLimit     = 1000
)

// Options are the settings both implementations share.
type Options struct {
	// MaxBody is the largest message body in bytes; 0 means DefaultMaxBody.
	MaxBody int
	// Tables is the number of tables of each kind (messages, conversations,
	// user_conversations) per database; 0 means 1. See Layout.
	Tables int
	// GroupCommit tunes the batching of appends.
	GroupCommit GroupCommit
	// IndexCache is how many conversation-list rows the process remembers
	// as written (per generation, see indexCache); 0 means
	// DefaultIndexCache, a negative number turns the cache off.
	IndexCache int
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MaxBody < 0 || o.MaxBody > MaxMaxBody {
		return o, errors.New("store: max body must be between 1 and 16 MiB-1")
	}
	if o.Tables == 0 {
		o.Tables = 1
	}
	if o.IndexCache == 0 {
		o.IndexCache = DefaultIndexCache
	}
	g := o.GroupCommit
	if g.MaxItems < 0 || g.Writers < 0 || g.TxTimeout < 0 || g.MaxWait < 0 || g.MaxWait > MaxGroupWait {
		return o, fmt.Errorf("store: group commit settings out of range: %+v", g)
	}
	return o, nil
}

// AppendItem is one message to store.
type AppendItem struct {
	ConvID      string
	Sender      string
	Recipient   string // the other user of a one-to-one conversation; empty in a group
	ClientMsgID string
	ContentType string
	Body        string
	CreatedAtMs int64 // 0 means now
}

// AppendResult answers one AppendItem.
type AppendResult struct {
	Seq          int64
	Duplicate    bool
	CreatedAtMs  int64
	ErrorCode    int32 // an errcode code when the item was rejected, else 0
	ErrorMessage string
}

// Message is a stored message.
type Message struct {
	ConvID      string
	Seq         int64
	Sender      string
	Recipient   string
	ClientMsgID string
	ContentType string
	Body        string
	CreatedAtMs int64
}

// SyncResult is a page of a conversation.
type SyncResult struct {
	Messages []Message
	HasMore  bool
	LastSeq  int64
}

// Conversation is a conversation as one user sees it.
type Conversation struct {
	ConvID      string
	Kind        string // ids.KindP2P or ids.KindGroup
	Peer        string // the other user of a one-to-one conversation
	LastSeq     int64
	UpdatedAtMs int64 // created_at_ms of its newest message
}

// User is a user record.
type User struct {
	UID         string
	Name        string
	CreatedAtMs int64 // 0 on input means now
}
