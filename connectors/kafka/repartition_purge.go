package kafka

import (
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// DefaultRepartitionPurgeDelay is how long after a checkpoint commits the
// repartition messages it applied are deleted, unless the source's
// repartition_purge_delay says otherwise.
const DefaultRepartitionPurgeDelay = 30 * time.Second

// purger deletes what the pipeline has applied from the repartition topic
// (DeleteRecords), as Kafka Streams purges its repartition topics, so that
// they hold seconds of exchanges rather than the topic's retention.
//
// It deletes a partition's messages only delay after the checkpoint that
// applied them committed. Without fencing, a process that lost a partition
// without noticing yet (stalled past its session timeout) may go on taking
// checkpoints for a few seconds, until its next heartbeat; the partition's
// new owner restored from the checkpoint before, and still needs what came
// after it. The delay, longer than such a window, keeps those messages.
type purger struct {
	topic  string
	admin  sarama.ClusterAdmin
	delay  time.Duration
	logger *slog.Logger

	mu      sync.Mutex
	pending []applied // in commit order
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	warned  bool
}

// applied is the offset up to which a checkpoint applied a partition.
type applied struct {
	at        time.Time
	partition int32
	offset    int64
}

func newPurger(topic string, admin sarama.ClusterAdmin, delay time.Duration, logger *slog.Logger) *purger {
	pg := &purger{topic: topic, admin: admin, delay: delay, logger: logger,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go pg.loop()
	return pg
}

// add notes that partition p is applied and committed up to offset.
func (pg *purger) add(p int, offset int64) {
	pg.mu.Lock()
	pg.pending = append(pg.pending, applied{at: time.Now(), partition: int32(p), offset: offset})
	pg.mu.Unlock()
	select {
	case pg.wake <- struct{}{}:
	default:
	}
}

// due takes the entries older than the delay, the latest offset of each
// partition, as DeleteRecords wants them (the first offset to keep), and
// when the next entry is due.
func (pg *purger) due(now time.Time) (map[int32]int64, time.Duration) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	var del map[int32]int64
	i := 0
	for ; i < len(pg.pending) && now.Sub(pg.pending[i].at) >= pg.delay; i++ {
		a := pg.pending[i]
		if del == nil {
			del = make(map[int32]int64)
		}
		del[a.partition] = max(del[a.partition], a.offset+1)
	}
	pg.pending = pg.pending[:copy(pg.pending, pg.pending[i:])]
	next := time.Duration(-1)
	if len(pg.pending) > 0 {
		next = pg.delay - now.Sub(pg.pending[0].at)
	}
	return del, next
}

func (pg *purger) loop() {
	defer close(pg.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-pg.stop:
			return
		case <-pg.wake:
		case <-timer.C:
		}
		del, next := pg.due(time.Now())
		if len(del) > 0 {
			if err := pg.admin.DeleteRecords(pg.topic, del); err != nil {
				// Best effort: the topic's retention still bounds it.
				if !pg.warned {
					pg.warned = true
					pg.logger.Warn("cannot purge applied exchanges from the repartition topic; its retention bounds it", "err", err)
				} else {
					pg.logger.Debug("purge repartition topic", "err", err)
				}
			}
		}
		if next < 0 {
			next = time.Hour
		}
		timer.Reset(next)
	}
}

func (pg *purger) close() {
	close(pg.stop)
	<-pg.done
}
