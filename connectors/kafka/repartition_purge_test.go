package kafka

import (
	"maps"
	"testing"
	"time"
)

// TestPurgeWaitsForTheDelay checks which offsets the purger deletes: for
// each partition, up to the latest offset applied by a checkpoint that
// committed at least the delay ago, and nothing of the younger ones.
func TestPurgeWaitsForTheDelay(t *testing.T) {
	pg := &purger{delay: 30 * time.Second}
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	pg.pending = []applied{
		{at: t0, partition: 0, offset: 10},
		{at: t0, partition: 1, offset: 4},
		{at: t0.Add(time.Second), partition: 0, offset: 12},
		{at: t0.Add(20 * time.Second), partition: 0, offset: 30},
	}
	del, next := pg.due(t0.Add(29 * time.Second))
	if len(del) != 0 || next != time.Second {
		t.Errorf("at 29s: delete %v, next in %v; want nothing, next in 1s", del, next)
	}
	del, next = pg.due(t0.Add(31 * time.Second))
	if want := map[int32]int64{0: 13, 1: 5}; !maps.Equal(del, want) || next != 19*time.Second {
		t.Errorf("at 31s: delete before %v, next in %v; want %v, next in 19s", del, next, want)
	}
	del, next = pg.due(t0.Add(time.Minute))
	if want := map[int32]int64{0: 31}; !maps.Equal(del, want) || next >= 0 || len(pg.pending) != 0 {
		t.Errorf("at 1m: delete before %v, next in %v, %d pending; want %v and none pending", del, next, len(pg.pending), want)
	}
}
