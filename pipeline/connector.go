package pipeline

import "context"

// Message is one raw input from a source: the bytes of one event, before
// decoding. Decoding happens in the pipeline, never in the source, so a
// malformed message is dead-lettered instead of blocking its split.
type Message struct {
	// Payload is the raw event. The runtime is done with it when Deliver
	// returns, so a source may reuse its buffer.
	Payload []byte
	// Offset is the message's position in its split, strictly increasing.
	Offset int64
	// Event, when set, is the message already decoded (an in-process source
	// of Go values, a benchmark); Payload is then ignored. The runtime copies
	// it before Deliver returns.
	Event *Event
}

// Offsets maps a split to the offset of the last message of it that the
// committed state reflects.
type Offsets map[int32]int64

// Source reads raw messages from outside and delivers them in batches.
//
// A source has one or more splits (a file has one; a Kafka topic has one per
// partition). Offsets are per split. A source that can seek starts each split
// after its offset in resume; the runtime also skips any delivered message at
// or below the committed offset, so a source may redeliver.
type Source interface {
	// Read delivers batches to d until the source ends, returning nil (a
	// bounded source), or ctx is done, returning ctx.Err() or nil.
	Read(ctx context.Context, resume Offsets, d Deliverer) error
}

// Deliverer takes batches from a source. It is safe for concurrent use by
// the goroutines of different splits.
type Deliverer interface {
	// Deliver decodes a batch of one split in the calling goroutine and hands
	// it to the partition workers. It blocks while the workers are behind or
	// a checkpoint is being taken.
	Deliver(split int32, batch []Message) error
}

// PartitionedSource is implemented by sources whose splits are already
// partitioned by key (a Kafka topic): split s feeds pipeline partition
// s % partitions, and its watermark is that partition's own. Other sources'
// events are routed by key hash and their watermark is shared by every
// partition.
type PartitionedSource interface {
	Source
	// SplitPartitioned reports whether splits map to pipeline partitions.
	SplitPartitioned() bool
}

// CommitListener is implemented by sources that acknowledge their input only
// once the state that reflects it is committed (sources that cannot seek).
type CommitListener interface {
	// Committed is called after each checkpoint commit with the committed
	// offsets.
	Committed(offsets Offsets)
}

// SinkRecord is one encoded output on its way to a sink.
type SinkRecord struct {
	// Key is the record's key (the Kafka message key).
	Key string
	// ID is the record's deterministic id (the Watermill message UUID).
	ID string
	// JSON is the encoded record without a trailing newline. It is only
	// valid during the Write call.
	JSON []byte
}

// Sink writes outputs. Write is called by many partition workers at once,
// at the end of each micro-batch; Flush is called by the checkpoint
// coordinator before the state commits, and must make everything written so
// far durable or visible (output before commit).
type Sink interface {
	Write(records []SinkRecord) error
	Flush() error
	Close() error
}

// DeadLetter is one input the pipeline could not process.
type DeadLetter struct {
	// Reason says why, for a person: "not JSON: ...", "missing event_id".
	Reason string
	// Split and Offset locate the input in its source.
	Split  int32
	Offset int64
	// Payload is the raw input. It is only valid during the Write call.
	Payload []byte
}

// DeadLetterSink records inputs the pipeline could not process. It is
// flushed at each checkpoint like a Sink.
type DeadLetterSink interface {
	WriteDeadLetters(letters []DeadLetter) error
	Flush() error
	Close() error
}
