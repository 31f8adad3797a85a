package session

// ChunkSize is how many sessions one pool task of a Batch writes to.
const ChunkSize = 128

// Batch queues one or more frames to many sessions and then starts their
// writers together: a record fanned out to thousands of targets costs one
// pool task per ChunkSize sessions, not one task (and one goroutine
// wake-up) per session. The task writes to its sessions in turn without
// ever blocking; a session whose socket is full moves on to a pool task of
// its own, so a slow client never holds up the rest of its chunk.
//
// A Batch comes from Env.Batch or Session.Batch and is used by one
// goroutine; Flush must follow the Sends, and returns the Batch to its
// pool: it must not be used after.
type Batch struct {
	env   *Env
	ready []*Session // sessions whose writer Flush must start
}

// Batch returns an empty batch from env's pool; Flush returns it.
func (e *Env) Batch() *Batch {
	b, _ := e.batches.Get().(*Batch)
	if b == nil {
		b = &Batch{env: e}
	}
	return b
}

// Batch returns an empty batch for the sessions of s's server from a
// pool; Flush returns it.
func (s *Session) Batch() *Batch { return s.env.Batch() }

// Send queues frame to s like s.Send, but leaves starting s's writer to
// Flush. s must belong to the batch's server.
func (b *Batch) Send(s *Session, frame []byte) error {
	frame, err := s.wire(frame)
	if err != nil {
		return err
	}
	start, err := s.queue(frame)
	if start {
		b.ready = append(b.ready, s)
	}
	return err
}

// Flush starts the writers of the sessions Send queued to and empties b.
func (b *Batch) Flush() {
	for i := 0; i < len(b.ready); i += ChunkSize {
		c := b.env.chunk()
		c.ss = append(c.ss, b.ready[i:min(i+ChunkSize, len(b.ready))]...)
		if !b.env.Writers.Submit(c) {
			for _, s := range c.ss {
				s.Kill()
			}
			c.release()
		}
	}
	clear(b.ready)
	b.ready = b.ready[:0]
	b.env.batches.Put(b)
}

// chunk is one pool task of a Batch.
type chunk struct {
	env *Env
	ss  []*Session
}

// chunk takes a chunk from env's pool; chunks are recycled, so a steady
// stream of pushes allocates none.
func (e *Env) chunk() *chunk {
	c, _ := e.chunks.Get().(*chunk)
	if c == nil {
		c = &chunk{ss: make([]*Session, 0, ChunkSize)}
	}
	c.env = e
	return c
}

// Run writes to each session of the chunk without blocking.
func (c *chunk) Run() {
	frames := 0
	for _, s := range c.ss {
		frames += s.drain(false)
	}
	if frames > 0 {
		c.env.Obs.FramesOut(frames)
	}
	c.release()
}

func (c *chunk) release() {
	e := c.env
	clear(c.ss)
	c.ss, c.env = c.ss[:0], nil
	e.chunks.Put(c)
}
