package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/state"
)

// The changelog topic has one partition per pipeline partition. Partition p
// holds, in commit order, every change of pipeline partition p's state
// (table entries, timers, watermark) and of its split's offset: the key is
// the raw state key, the value the raw value behind a one-byte prefix, and
// a deletion is a tombstone (no value). A checkpoint's changes of p end
// with a marker record: once a marker is written, everything before it is
// a complete checkpoint. The topic is compacted, so it holds about one
// record per live key.
//
// Each process keeps, with p's state, the changelog offset of the last
// marker it wrote or restored ("changelog" metadata). On assignment, p's
// local state is current when that marker is still the changelog's last
// complete checkpoint; it is behind when complete checkpoints follow it
// (another process owned p meanwhile, or this one crashed after writing to
// the changelog and before committing locally): they are applied. Without
// a usable marker the partition is restored from the whole changelog.
// Records after the last marker are the rest of a checkpoint cut short by a
// crash: they are not applied, and their keys are written again with the
// restored values, followed by a marker, so that the changelog converges.

const (
	// metaName names the changelog bookkeeping in a partition's metadata:
	// epoch (8 bytes) and changelog offset of the last marker (8 bytes).
	metaName = "changelog"
	// valuePrefix precedes every value, so that no value is empty and a
	// tombstone (no value) is never mistaken for one.
	valuePrefix = 1
	// markerVersion is the first byte of a marker's value, followed by
	// the epoch and the split offset (8 bytes each).
	markerVersion = 1
)

// markerKey is the key of checkpoint markers: raw state keys never start
// with a zero byte.
var markerKey = []byte("\x00sluice/checkpoint")

// Changelog replicates the state of a pipeline's partitions to a
// compacted topic and restores it from there; see pipeline.Changelog.
type Changelog struct {
	topic    string
	nparts   int
	client   sarama.Client
	producer sarama.SyncProducer
	consumer sarama.Consumer
	logger   *slog.Logger
	retryFor time.Duration

	// mu serializes Appends; pmu[p] serializes the reads of partition p
	// (Restore, LastCheckpoint). The runtime never restores a partition
	// while it appends its changes, so the per-partition fields below are
	// only touched by one of them at a time.
	mu  sync.Mutex
	pmu []sync.Mutex
	// Per partition: the epoch of its last checkpoint, the offset of its
	// split that checkpoint reflects, and the watermark value last written.
	epoch  []int64
	offset []int64
	lastWM [][]byte
	wmKeys [][]byte
}

// OpenChangelog connects to the changelog topic of a pipeline with
// nparts partitions, creating it if missing.
func OpenChangelog(cc ClientConfig, topic string, nparts int, logger *slog.Logger) (*Changelog, error) {
	sc, err := cc.saramaConfig()
	if err != nil {
		return nil, err
	}
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Retry.Max = 5
	sc.Producer.MaxMessageBytes = maxProducerBytes
	// A checkpoint's changes go in requests of at most 1000 records, so
	// that a broker serves the pipeline's other requests in between.
	sc.Producer.Flush.MaxMessages = 1000
	sc.Net.MaxOpenRequests = 1
	sc.Consumer.Return.Errors = true
	// A restore reads to the end of a partition: large fetches, and no
	// waiting at the end for records that will not come.
	sc.Consumer.Fetch.Default = 8 << 20
	sc.Consumer.MaxWaitTime = 20 * time.Millisecond
	client, err := sarama.NewClient(cc.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("changelog %s: %w", topic, err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("changelog %s: %w", topic, err)
	}
	// Not admin.Close: it would close the shared client.
	if err := ensureTopic(admin, topic, nparts, changelogTopicConfig); err != nil {
		client.Close()
		return nil, fmt.Errorf("changelog: %w (create it compacted, with %d partitions)", err, nparts)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("changelog %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		producer.Close()
		client.Close()
		return nil, fmt.Errorf("changelog %s: %w", topic, err)
	}
	c := &Changelog{
		topic: topic, nparts: nparts, client: client, producer: producer, consumer: consumer,
		logger: logger.With("changelog", topic), retryFor: 2 * time.Minute,
		epoch: make([]int64, nparts), offset: make([]int64, nparts), lastWM: make([][]byte, nparts),
		wmKeys: make([][]byte, nparts), pmu: make([]sync.Mutex, nparts),
	}
	for p := range nparts {
		c.offset[p] = -1
		c.wmKeys[p] = state.WatermarkKey(p)
	}
	return c, nil
}

// Close disconnects.
func (c *Changelog) Close() error {
	return errors.Join(c.consumer.Close(), c.producer.Close(), c.client.Close())
}

// Append implements pipeline.Changelog: it sends the batch's changes,
// partition by partition, then one marker per partition that changed, and
// records the markers in the batch.
func (c *Changelog) Append(b *state.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var msgs []*sarama.ProducerMessage
	changed := make([]bool, c.nparts)
	wms := make([][]byte, c.nparts)
	var ar arena
	err := b.Changes(func(key, value []byte, deleted bool) error {
		scope, id := state.RawKeyScope(key)
		if (scope != state.ScopePartition && scope != state.ScopeSplit) || id < 0 || int(id) >= c.nparts {
			return nil
		}
		p := int(id)
		switch {
		case scope == state.ScopeSplit && !deleted && len(value) == 8:
			c.offset[p] = int64(binary.BigEndian.Uint64(value))
		case bytes.Equal(key, c.wmKeys[p]):
			if !deleted && bytes.Equal(value, c.lastWM[p]) {
				return nil // an unchanged watermark
			}
			wms[p] = value
		}
		changed[p] = true
		msgs = append(msgs, ar.record(c.topic, p, key, value, deleted))
		return nil
	})
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := c.send(msgs); err != nil {
		return err
	}
	markers := make([]*sarama.ProducerMessage, 0, c.nparts)
	for p, ch := range changed {
		if ch {
			markers = append(markers, c.marker(p, c.epoch[p]+1))
		}
	}
	if err := c.send(markers); err != nil {
		return err
	}
	for _, m := range markers {
		p := int(m.Partition)
		c.epoch[p]++
		if wms[p] != nil {
			c.lastWM[p] = bytes.Clone(wms[p])
		}
		b.SetMeta(p, metaName, encodeMeta(c.epoch[p], m.Offset))
	}
	return nil
}

// arena allocates the records of one Append in chunks.
type arena struct {
	bytes []byte
	msgs  []sarama.ProducerMessage
}

func (a *arena) record(topic string, p int, key, value []byte, deleted bool) *sarama.ProducerMessage {
	if len(a.msgs) == cap(a.msgs) {
		a.msgs = make([]sarama.ProducerMessage, 0, 1024)
	}
	need := len(key) + 1 + len(value)
	if cap(a.bytes)-len(a.bytes) < need {
		a.bytes = make([]byte, 0, max(64<<10, need))
	}
	start := len(a.bytes)
	a.bytes = append(a.bytes, key...)
	k := a.bytes[start:len(a.bytes):len(a.bytes)]
	a.msgs = append(a.msgs, sarama.ProducerMessage{Topic: topic, Partition: int32(p), Key: sarama.ByteEncoder(k)})
	m := &a.msgs[len(a.msgs)-1]
	if !deleted {
		start = len(a.bytes)
		a.bytes = append(a.bytes, valuePrefix)
		a.bytes = append(a.bytes, value...)
		m.Value = sarama.ByteEncoder(a.bytes[start:len(a.bytes):len(a.bytes)])
	}
	return m
}

func (c *Changelog) record(p int, key, value []byte, deleted bool) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: c.topic, Partition: int32(p), Key: sarama.ByteEncoder(bytes.Clone(key))}
	if !deleted {
		v := make([]byte, 1+len(value))
		v[0] = valuePrefix
		copy(v[1:], value)
		m.Value = sarama.ByteEncoder(v)
	}
	return m
}

func (c *Changelog) marker(p int, epoch int64) *sarama.ProducerMessage {
	v := make([]byte, 17)
	v[0] = markerVersion
	binary.BigEndian.PutUint64(v[1:], uint64(epoch))
	binary.BigEndian.PutUint64(v[9:], uint64(c.offset[p]))
	return &sarama.ProducerMessage{Topic: c.topic, Partition: int32(p), Key: sarama.ByteEncoder(markerKey), Value: sarama.ByteEncoder(v)}
}

// send sends msgs, sending again those that failed until all succeed or
// the retry time passes (a broker restarting).
func (c *Changelog) send(msgs []*sarama.ProducerMessage) error {
	return sendWithRetry(c.producer, msgs, c.retryFor, c.logger, "changelog send")
}

// change is a state key's value in a changelog (deleted: a tombstone).
type change struct {
	value   []byte
	deleted bool
}

// marked is a checkpoint marker read from the changelog.
type marked struct {
	found  bool
	epoch  int64
	split  int64 // the split offset the checkpoint reflects
	offset int64 // the marker's changelog offset
}

// scan is what reading a range of a changelog partition found.
type scan struct {
	// done holds the changes up to the last marker, tail those after it.
	done, tail map[string]change
	last       marked
	// first is the first record read: at a marker the caller expects, or
	// not.
	first    marked
	firstOff int64
}

// Restore implements pipeline.Changelog. Partitions may be restored
// concurrently.
func (c *Changelog) Restore(db *state.DB, p int) error {
	if p < 0 || p >= c.nparts {
		return fmt.Errorf("changelog %s: no partition %d", c.topic, p)
	}
	c.pmu[p].Lock()
	defer c.pmu[p].Unlock()
	meta, haveMeta, err := db.Meta(p, metaName)
	if err != nil {
		return err
	}
	localEpoch, localMark := int64(0), int64(-1)
	if haveMeta {
		if localEpoch, localMark, err = decodeMeta(meta); err != nil {
			return fmt.Errorf("changelog %s: partition %d: %w", c.topic, p, err)
		}
	}
	low, err := c.client.GetOffset(c.topic, int32(p), sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("changelog %s: partition %d: oldest offset: %w", c.topic, p, err)
	}
	high, err := c.client.GetOffset(c.topic, int32(p), sarama.OffsetNewest)
	if err != nil {
		return fmt.Errorf("changelog %s: partition %d: newest offset: %w", c.topic, p, err)
	}
	start := time.Now()

	// The usual restart: this process wrote the changelog's last record,
	// its marker.
	if haveMeta && localMark == high-1 {
		c.epoch[p] = localEpoch
		return c.loadLocal(db, p)
	}
	// The local state is at the marker localMark: read what follows it.
	if haveMeta && localMark >= low && localMark < high {
		sc, err := c.read(p, localMark, high)
		if err != nil {
			return err
		}
		if sc.firstOff == localMark && sc.first.found && sc.first.epoch == localEpoch {
			if sc.last.found && sc.last.offset > localMark {
				if err := c.apply(db, p, sc.done, sc.last, false); err != nil {
					return err
				}
				c.logger.Info("partition caught up from the changelog", "partition", p,
					"keys", len(sc.done), "from", localMark, "to", sc.last.offset, "took", time.Since(start))
				localEpoch = sc.last.epoch
			}
			c.epoch[p] = localEpoch
			if err := c.loadLocal(db, p); err != nil {
				return err
			}
			return c.repair(db, p, sc.tail)
		}
	}
	if haveMeta && localMark >= high {
		// The changelog lost what this process wrote to it (a topic
		// recreated, a broker that lost its data): the local state is the
		// truth and the changelog is made to match it.
		c.logger.Warn("changelog is behind the local state: writing the local state to it", "partition", p,
			"local_marker", localMark, "changelog_end", high)
		return c.reseed(db, p, low, high, localEpoch)
	}
	sc, err := c.read(p, low, high)
	if err != nil {
		return err
	}
	if !sc.last.found && haveMeta {
		c.logger.Warn("changelog holds no checkpoint of a partition this process has state of: writing the local state to it",
			"partition", p)
		return c.reseed(db, p, low, high, localEpoch)
	}
	if err := c.apply(db, p, sc.done, sc.last, true); err != nil {
		return err
	}
	if sc.last.found {
		c.logger.Info("partition restored from the changelog", "partition", p, "keys", len(sc.done),
			"marker", sc.last.offset, "took", time.Since(start))
	}
	c.epoch[p] = sc.last.epoch
	if err := c.loadLocal(db, p); err != nil {
		return err
	}
	return c.repair(db, p, sc.tail)
}

// read reads changelog partition p from offset from up to high (exclusive).
func (c *Changelog) read(p int, from, high int64) (*scan, error) {
	sc := &scan{done: map[string]change{}, tail: map[string]change{}, firstOff: -1}
	if from >= high {
		return sc, nil
	}
	pc, err := c.consumer.ConsumePartition(c.topic, int32(p), from)
	if err != nil {
		return nil, fmt.Errorf("changelog %s: partition %d: read from %d: %w", c.topic, p, from, err)
	}
	defer pc.Close()
	idle := time.NewTimer(c.retryFor)
	defer idle.Stop()
	for {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				return nil, fmt.Errorf("changelog %s: partition %d: consumer closed", c.topic, p)
			}
			if bytes.Equal(m.Key, markerKey) {
				mk, err := decodeMarker(m.Value)
				if err != nil {
					return nil, fmt.Errorf("changelog %s: partition %d offset %d: %w", c.topic, p, m.Offset, err)
				}
				mk.offset = m.Offset
				if sc.firstOff < 0 {
					sc.first = mk
				}
				for k, ch := range sc.tail {
					sc.done[k] = ch
				}
				clear(sc.tail)
				sc.last = mk
			} else if m.Key != nil {
				ch := change{deleted: m.Value == nil}
				if !ch.deleted {
					if len(m.Value) == 0 || m.Value[0] != valuePrefix {
						return nil, fmt.Errorf("changelog %s: partition %d offset %d: not a Sluice changelog record", c.topic, p, m.Offset)
					}
					ch.value = bytes.Clone(m.Value[1:])
				}
				sc.tail[string(m.Key)] = ch
			}
			if sc.firstOff < 0 {
				sc.firstOff = m.Offset
			}
			if m.Offset >= high-1 {
				return sc, nil
			}
			idle.Reset(c.retryFor)
		case err := <-pc.Errors():
			return nil, fmt.Errorf("changelog %s: partition %d: read: %w", c.topic, p, err)
		case <-idle.C:
			return nil, fmt.Errorf("changelog %s: partition %d: no record for %s while reading up to offset %d", c.topic, p, c.retryFor, high)
		}
	}
}

// apply writes changes into partition p of db in one commit, with the
// marker as its changelog position; full replaces whatever p held.
func (c *Changelog) apply(db *state.DB, p int, changes map[string]change, last marked, full bool) error {
	b := db.NewBatch()
	defer b.Close()
	if full {
		b.ClearPartition(p)
		b.DeleteRaw(state.OffsetKey(int32(p)))
	}
	for k, ch := range changes {
		if ch.deleted {
			b.DeleteRaw([]byte(k))
		} else {
			b.SetRaw([]byte(k), ch.value)
		}
	}
	if last.found {
		b.SetMeta(p, metaName, encodeMeta(last.epoch, last.offset))
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("changelog %s: restore partition %d: %w", c.topic, p, err)
	}
	return nil
}

// loadLocal sets what Append compares against from p's committed state.
func (c *Changelog) loadLocal(db *state.DB, p int) error {
	offs, err := db.Offsets()
	if err != nil {
		return err
	}
	c.offset[p] = -1
	if off, ok := offs[int32(p)]; ok {
		c.offset[p] = off
	}
	c.lastWM[p] = nil
	return nil
}

// repair writes the keys that a cut-short checkpoint left in the changelog
// again, with the committed values, then a marker.
func (c *Changelog) repair(db *state.DB, p int, tail map[string]change) error {
	if len(tail) == 0 {
		return nil
	}
	msgs := make([]*sarama.ProducerMessage, 0, len(tail)+1)
	for k := range tail {
		v, ok, err := db.GetRaw([]byte(k))
		if err != nil {
			return err
		}
		msgs = append(msgs, c.record(p, []byte(k), v, !ok))
	}
	c.logger.Info("repairing a checkpoint cut short in the changelog", "partition", p, "keys", len(tail))
	return c.publishWithMarker(db, p, msgs)
}

// reseed makes changelog partition p match the local state: every local
// key, and a tombstone for every key the changelog has that the local
// state lacks.
func (c *Changelog) reseed(db *state.DB, p int, low, high, epoch int64) error {
	sc, err := c.read(p, low, high)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var msgs []*sarama.ProducerMessage
	add := func(k, v []byte) bool {
		seen[string(k)] = true
		msgs = append(msgs, c.record(p, k, v, false))
		return true
	}
	if err := db.ScanPartition(p, add); err != nil {
		return err
	}
	if v, ok, err := db.GetRaw(state.OffsetKey(int32(p))); err != nil {
		return err
	} else if ok {
		add(state.OffsetKey(int32(p)), v)
	}
	for _, m := range []map[string]change{sc.done, sc.tail} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				msgs = append(msgs, c.record(p, []byte(k), nil, true))
			}
		}
	}
	c.epoch[p] = epoch
	if err := c.loadLocal(db, p); err != nil {
		return err
	}
	return c.publishWithMarker(db, p, msgs)
}

// publishWithMarker sends msgs of partition p and a marker of its current
// epoch, then records the marker locally.
func (c *Changelog) publishWithMarker(db *state.DB, p int, msgs []*sarama.ProducerMessage) error {
	if len(msgs) > 0 {
		if err := c.send(msgs); err != nil {
			return err
		}
	}
	m := c.marker(p, c.epoch[p])
	if err := c.send([]*sarama.ProducerMessage{m}); err != nil {
		return err
	}
	b := db.NewBatch()
	defer b.Close()
	b.SetMeta(p, metaName, encodeMeta(c.epoch[p], m.Offset))
	if err := b.Commit(); err != nil {
		return fmt.Errorf("changelog %s: partition %d: %w", c.topic, p, err)
	}
	return nil
}

// LastCheckpoint returns the split offset that the latest complete
// checkpoint of partition p in the changelog reflects (-1 when none does),
// reading only the changelog's last record: it is a marker unless a
// checkpoint is being written or was cut short, and then ok is false.
func (c *Changelog) LastCheckpoint(p int) (offset int64, ok bool, err error) {
	if p < 0 || p >= c.nparts {
		return 0, false, fmt.Errorf("changelog %s: no partition %d", c.topic, p)
	}
	c.pmu[p].Lock()
	defer c.pmu[p].Unlock()
	high, err := c.client.GetOffset(c.topic, int32(p), sarama.OffsetNewest)
	if err != nil {
		return 0, false, err
	}
	low, err := c.client.GetOffset(c.topic, int32(p), sarama.OffsetOldest)
	if err != nil {
		return 0, false, err
	}
	if high <= low {
		return -1, true, nil
	}
	pc, err := c.consumer.ConsumePartition(c.topic, int32(p), high-1)
	if err != nil {
		return 0, false, err
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if m == nil || !bytes.Equal(m.Key, markerKey) {
			return 0, false, nil
		}
		mk, err := decodeMarker(m.Value)
		if err != nil {
			return 0, false, err
		}
		return mk.split, true, nil
	case err := <-pc.Errors():
		return 0, false, err
	case <-time.After(10 * time.Second):
		return 0, false, errors.New("no record")
	}
}

func encodeMeta(epoch, offset int64) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(epoch))
	binary.BigEndian.PutUint64(v[8:], uint64(offset))
	return v
}

func decodeMeta(v []byte) (epoch, offset int64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("bad changelog metadata (%d bytes)", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), nil
}

func decodeMarker(v []byte) (marked, error) {
	if len(v) != 17 || v[0] != markerVersion {
		return marked{}, errors.New("bad checkpoint marker")
	}
	return marked{found: true, epoch: int64(binary.BigEndian.Uint64(v[1:])), split: int64(binary.BigEndian.Uint64(v[9:]))}, nil
}
