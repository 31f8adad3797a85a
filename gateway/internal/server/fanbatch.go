package server

import (
	"github.com/gochat-im/gochat/gateway/internal/downstream"
	"github.com/gochat-im/gochat/gateway/internal/session"
)

// Batch makes the fan-out start the writers of a record's targets
// together (session.Batch): one pool task per chunk of targets instead of
// one per target.
func (l lookup) Batch() downstream.Batch { return &fanBatch{} }

// fanBatch adapts a session.Batch to the fan-out's connections. The
// session batch comes from the first target's server, so lookup needs no
// reference to it.
type fanBatch struct {
	b *session.Batch
}

func (f *fanBatch) Send(c downstream.Conn, frame []byte) error {
	s := c.(*session.Session) // lookup only returns sessions
	if f.b == nil {
		f.b = s.Batch()
	}
	return f.b.Send(s, frame)
}

func (f *fanBatch) Flush() {
	if f.b != nil {
		f.b.Flush()
		f.b = nil
	}
}
