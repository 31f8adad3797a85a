package downstream

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
)

// Record is a downstream record whose targets stay encoded in the Kafka
// message: a record for a large group lists thousands of (uid, conn id)
// pairs, and decoding each into a struct and a string would cost two
// allocations per target just to look it up and drop it. Targets walks
// them in place instead; everything else is decoded as usual.
type Record struct {
	events.DownRecord // every field but Targets and Records
	targets           []byte
	count             int
	// A BATCH record's records, also left encoded.
	records []byte
	nrec    int
}

var (
	errBadTargets = errors.New("downstream: malformed target list")
	errBadRecords = errors.New("downstream: malformed record list")
)

// Parse decodes b (a Thrift-binary events.DownRecord) into r. r's targets
// refer to b, which must not change while r is used.
func (r *Record) Parse(b []byte) (err error) {
	*r = Record{}
	defer recoverMalformed(&err)
	off := 0
	for {
		typ, id, l, err := thrift.Binary.ReadFieldBegin(b[off:])
		if err != nil {
			return fmt.Errorf("downstream record: %w", err)
		}
		off += l
		if typ == thrift.STOP {
			return nil
		}
		switch {
		case id == 2 && typ == thrift.LIST:
			et, size, l, err := thrift.Binary.ReadListBegin(b[off:])
			if err != nil {
				return fmt.Errorf("downstream record targets: %w", err)
			}
			off += l
			// A list of anything else would be taken for empty; the
			// generated decoder reads it as empty targets.
			if et != thrift.STRUCT {
				return errBadTargets
			}
			n, err := skipList(b[off:], et, size)
			if err != nil {
				return errBadTargets
			}
			r.targets, r.count = b[off:off+n], size
			off += n
		case id == 9 && typ == thrift.LIST:
			et, size, l, err := thrift.Binary.ReadListBegin(b[off:])
			if err != nil {
				return fmt.Errorf("downstream record list: %w", err)
			}
			off += l
			if et != thrift.STRING {
				return errBadRecords
			}
			n, err := skipList(b[off:], et, size)
			if err != nil {
				return errBadRecords
			}
			r.records, r.nrec = b[off:off+n], size
			off += n
		default:
			n, err := r.readField(b[off:], typ, id)
			if err != nil {
				return fmt.Errorf("downstream record field %d: %w", id, err)
			}
			off += n
		}
	}
}

// recoverMalformed turns a panic while decoding into an error. The Thrift
// skipping code of cloudwego/gopkg v0.2.0 indexes a table with the type
// byte of the input and panics on an invalid one (found by FuzzRecord); a
// malformed record must cost the gateway a log line, not the process.
func recoverMalformed(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("downstream record: malformed (%v)", p)
	}
}

func skipList(b []byte, et thrift.TType, size int) (int, error) {
	off := 0
	for i := 0; i < size; i++ {
		n, err := thrift.Binary.Skip(b[off:], et)
		if err != nil {
			return 0, err
		}
		off += n
	}
	return off, nil
}

// readField decodes one field other than the targets with the generated
// code, or skips it.
func (r *Record) readField(b []byte, typ thrift.TType, id int16) (int, error) {
	d := &r.DownRecord
	switch {
	case id == 1 && typ == thrift.I32:
		return d.FastReadField1(b)
	case id == 3 && typ == thrift.STRUCT:
		return d.FastReadField3(b)
	case id == 4 && typ == thrift.STRUCT:
		return d.FastReadField4(b)
	case id == 5 && typ == thrift.STRUCT:
		return d.FastReadField5(b)
	case id == 6 && typ == thrift.STRING:
		return d.FastReadField6(b)
	case id == 7 && typ == thrift.I32:
		return d.FastReadField7(b)
	case id == 8 && typ == thrift.STRING:
		return d.FastReadField8(b)
	}
	return thrift.Binary.Skip(b, typ)
}

// Len is the number of targets.
func (r *Record) Len() int { return r.count }

// Targets calls fn with each target's uid (a slice of the record, valid
// while the record is) and conn id, without allocating.
func (r *Record) Targets(fn func(uid []byte, connID int64)) (err error) {
	defer recoverMalformed(&err)
	b := r.targets
	for i := 0; i < r.count; i++ {
		var (
			uid  []byte
			conn int64
		)
		for {
			if len(b) == 0 {
				return errBadTargets
			}
			typ := thrift.TType(b[0])
			if typ == thrift.STOP {
				b = b[1:]
				break
			}
			if len(b) < 3 {
				return errBadTargets
			}
			id := int16(binary.BigEndian.Uint16(b[1:]))
			b = b[3:]
			switch {
			case id == 1 && typ == thrift.STRING:
				if len(b) < 4 {
					return errBadTargets
				}
				n := int(binary.BigEndian.Uint32(b))
				if n < 0 || len(b) < 4+n {
					return errBadTargets
				}
				uid, b = b[4:4+n], b[4+n:]
			case id == 2 && typ == thrift.I64:
				if len(b) < 8 {
					return errBadTargets
				}
				conn, b = int64(binary.BigEndian.Uint64(b)), b[8:]
			default:
				n, err := thrift.Binary.Skip(b, typ)
				if err != nil {
					return errBadTargets
				}
				b = b[n:]
			}
		}
		fn(uid, conn)
	}
	return nil
}

// Records is the number of records a BATCH record holds.
func (r *Record) Records() int { return r.nrec }

// EachRecord calls fn with each record of a BATCH record, encoded (a slice
// of the record, valid while the record is), in order.
func (r *Record) EachRecord(fn func(rec []byte)) error {
	b := r.records
	for i := 0; i < r.nrec; i++ {
		if len(b) < 4 {
			return errBadRecords
		}
		n := int(binary.BigEndian.Uint32(b))
		if n < 0 || len(b) < 4+n {
			return errBadRecords
		}
		fn(b[4 : 4+n])
		b = b[4+n:]
	}
	return nil
}
