package state

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// JSONCodec returns a Codec encoding T with encoding/json. It is convenient
// but slow (reflection): tables decode only on cache misses and encode only
// at flushes, yet a hand-written Codec is better for big or hot tables. A
// value encoding/json rejects (a NaN float, a failing MarshalJSON) makes
// Partition.Flush fail.
func JSONCodec[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

// codecError is the panic value of a Codec that cannot encode a value;
// Partition.Flush recovers it and returns the error.
type codecError struct{ err error }

func (jsonCodec[T]) Append(dst []byte, v T) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Codec.Append cannot fail: Partition.Flush recovers this.
		panic(codecError{fmt.Errorf("json codec: %w", err)})
	}
	return append(dst, b...)
}

func (jsonCodec[T]) Decode(src []byte) (T, error) {
	var v T
	if err := json.Unmarshal(src, &v); err != nil {
		return v, fmt.Errorf("json codec: %w", err)
	}
	return v, nil
}

// Int64Codec encodes an int64 as a varint.
var Int64Codec Codec[int64] = int64Codec{}

type int64Codec struct{}

func (int64Codec) Append(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

func (int64Codec) Decode(src []byte) (int64, error) {
	v, n := binary.Varint(src)
	if n <= 0 || n != len(src) {
		return 0, fmt.Errorf("int64 codec: malformed varint of %d bytes", len(src))
	}
	return v, nil
}

// Float64Codec encodes a float64 as its 8 IEEE 754 bytes, big endian.
var Float64Codec Codec[float64] = float64Codec{}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(v))
}

func (float64Codec) Decode(src []byte) (float64, error) {
	if len(src) != 8 {
		return 0, fmt.Errorf("float64 codec: %d bytes, want 8", len(src))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(src)), nil
}

// StringCodec stores a string as its bytes.
var StringCodec Codec[string] = stringCodec{}

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }

func (stringCodec) Decode(src []byte) (string, error) { return string(src), nil }

// BytesCodec stores a byte slice as is; Decode returns a copy.
var BytesCodec Codec[[]byte] = bytesCodec{}

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }

func (bytesCodec) Decode(src []byte) ([]byte, error) { return append([]byte{}, src...), nil }
