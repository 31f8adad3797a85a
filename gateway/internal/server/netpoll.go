package server

import (
	"reflect"
	"sync"
	"syscall"
	"unsafe"

	"github.com/cloudwego/netpoll"
)

// Netpoll buffer sizes for many idle connections.
//
// By default netpoll gives each connection an 8 KiB input buffer and
// allocates output nodes of at least 4 KiB; measured here that costs about
// 12 KiB of RSS per idle connection. BufferSize is the first input node
// (and the size of each read until a read fills it, then reads double);
// LinkBufferCap is the smallest node netpoll allocates, input or output.
// Client frames are small JSON, and an idle connection keeps one input
// node and one output node for ever, so both are kept small: a connection
// that receives more gets larger nodes as it needs them.
const (
	netpollBufferSize    = 128
	netpollLinkBufferCap = 128
)

var tuneOnce sync.Once

// TuneNetpoll applies the gateway's netpoll settings. netpoll reads them as
// connections are created, so call it once at start, before any listener
// exists; later calls do nothing.
func TuneNetpoll() error {
	var err error
	tuneOnce.Do(func() {
		netpoll.LinkBufferCap = netpollLinkBufferCap
		err = netpoll.Configure(netpoll.Config{BufferSize: netpollBufferSize})
	})
	return err
}

// scratchIovecs is how many buffer nodes one flush hands to sendmsg. The
// session writes each batch of frames into one node, so a flush rarely
// has more than two.
const scratchIovecs = 4

// scratchTrimmer shrinks netpoll's per-connection write scratch.
//
// Every netpoll connection takes from a pool a "barrier" of 32 slice
// headers and 32 iovecs (1.3 KiB) that its Flush uses to build one sendmsg
// call, and keeps it for its whole life: on an idle connection that is the
// largest single cost, a third of the gateway's memory per connection.
// netpoll has no setting for it, so the trimmer replaces the two arrays
// with scratchIovecs-entry ones when the connection is prepared, before
// anything is written. Flush then sends up to scratchIovecs nodes per
// system call and lets the poller send the rest, which is correct for any
// count (the poller uses its own scratch); the gateway's writes fit in one
// or two nodes (see session.write).
//
// The fields are found by name and type with reflect on the first
// connection; if netpoll's layout ever differs, the trimmer disables
// itself and connections keep the full scratch (TestScratchTrim fails,
// flagging the upgrade). Trimmed barriers return to netpoll's pool when
// their connection closes and are reused as they are.
type scratchTrimmer struct {
	once             sync.Once
	ok               bool
	typ              unsafe.Pointer // the connection type the offsets belong to
	barrier, bs, ivs uintptr        // field offsets
}

// iface is the layout of a non-empty interface value.
type iface struct{ typ, data unsafe.Pointer }

var (
	typeByteSlices = reflect.TypeFor[[][]byte]()
	typeIovecs     = reflect.TypeFor[[]syscall.Iovec]()
)

func (t *scratchTrimmer) init(conn netpoll.Connection) {
	ct := reflect.TypeOf(conn)
	if ct.Kind() != reflect.Pointer || ct.Elem().Kind() != reflect.Struct {
		return
	}
	bf, ok := ct.Elem().FieldByName("outputBarrier")
	if !ok || bf.Type.Kind() != reflect.Pointer || bf.Type.Elem().Kind() != reflect.Struct {
		return
	}
	// The field may be promoted from embedded structs (a client
	// *netpoll.TCPConnection embeds the connection); add up the offsets
	// along the path, which must not pass through a pointer.
	off, st := uintptr(0), ct.Elem()
	for _, i := range bf.Index {
		f := st.Field(i)
		off += f.Offset
		st = f.Type
		if st.Kind() == reflect.Pointer && f.Name != "outputBarrier" {
			return
		}
	}
	bf.Offset = off
	bt := bf.Type.Elem()
	bs, ok1 := bt.FieldByName("bs")
	ivs, ok2 := bt.FieldByName("ivs")
	if !ok1 || !ok2 || bs.Type != typeByteSlices || ivs.Type != typeIovecs {
		return
	}
	t.typ = (*iface)(unsafe.Pointer(&conn)).typ
	t.barrier, t.bs, t.ivs, t.ok = bf.Offset, bs.Offset, ivs.Offset, true
}

// trim shrinks conn's write scratch; it reports whether it could.
func (t *scratchTrimmer) trim(conn netpoll.Connection) bool {
	t.once.Do(func() { t.init(conn) })
	if !t.ok {
		return false
	}
	v := (*iface)(unsafe.Pointer(&conn))
	if v.typ != t.typ || v.data == nil {
		return false
	}
	b := *(*unsafe.Pointer)(unsafe.Add(v.data, t.barrier))
	if b == nil {
		return false
	}
	bs := (*[][]byte)(unsafe.Add(b, t.bs))
	ivs := (*[]syscall.Iovec)(unsafe.Add(b, t.ivs))
	if len(*bs) > scratchIovecs && len(*ivs) >= len(*bs) {
		*bs = make([][]byte, scratchIovecs)
		*ivs = make([]syscall.Iovec, scratchIovecs)
	}
	return true
}
