package state

import "encoding/binary"

// Raw key layout. Keys, names and fields never contain the byte 0x00, which
// therefore separates them. Partitions and splits are 4 bytes big endian.
//
//	o <split>                                  offset: 8 bytes big endian
//	w <partition>                              watermark: 8 bytes big endian
//	k <partition> <key> 00 v <name>            value table entry
//	k <partition> <key> 00 c <name>            counter table entry
//	k <partition> <key> 00 m <name> 00 <field> map table field
//	t <partition> <key> 00 <namespace> 00 <timer>
//	                                           timer: at (8 bytes BE), domain
//	m <partition> <name>                       metadata of the partition (raw.go)
//
// The key comes first so that everything a key owns in a partition lies in
// two contiguous ranges (k… and t…): erasing a key is two range deletions,
// and they also cover tables and timer namespaces not opened in this process.
//
// A table with a TTL stores the write time (unix nanos, 8 bytes big endian)
// before the encoded value.
const (
	tagOffset    = 'o'
	tagWatermark = 'w'
	tagKeyed     = 'k'
	tagTimer     = 't'
	tagMeta      = 'm'

	kindValue   = 'v'
	kindCounter = 'c'
	kindMap     = 'm'
)

// appendTagged appends tag and the 4-byte big-endian n.
func appendTagged(dst []byte, tag byte, n uint32) []byte {
	dst = append(dst, tag)
	return binary.BigEndian.AppendUint32(dst, n)
}

// appendKeyStart appends the first raw key of everything key owns under tag
// in partition part: tag part key 00.
func appendKeyStart(dst []byte, tag byte, part uint32, key string) []byte {
	dst = appendTagged(dst, tag, part)
	dst = append(dst, key...)
	return append(dst, 0)
}

// keyRange returns the bounds [start, end) of everything key owns under tag
// in partition part, in one fresh slice.
func keyRange(tag byte, part uint32, key string) (start, end []byte) {
	n := 5 + len(key) + 1
	buf := make([]byte, 0, 2*n)
	buf = appendKeyStart(buf, tag, part, key)
	start = buf[:n:n]
	buf = appendKeyStart(buf, tag, part, key)
	end = buf[n:]
	end[len(end)-1] = 1
	return start, end
}

// partitionRange returns the bounds [start, end) of everything partition part
// holds under tag.
func partitionRange(tag byte, part uint32) (start, end []byte) {
	return appendTagged(nil, tag, part), appendTagged(nil, tag, part+1)
}

func putInt64(dst []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

func getInt64(src []byte) int64 {
	return int64(binary.BigEndian.Uint64(src))
}
