package kafka_test

import (
	"log/slog"
	"maps"
	"path/filepath"
	"testing"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/state"
)

// dump returns what a store holds of partition p: its entries, timers,
// watermark and the offset of split p.
func dump(t *testing.T, db *state.DB, p int) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := db.ScanPartition(p, func(k, v []byte) bool { out[string(k)] = string(v); return true }); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := db.GetRaw(state.OffsetKey(int32(p))); err != nil {
		t.Fatal(err)
	} else if ok {
		out["offset"] = string(v)
	}
	return out
}

func openDB(t *testing.T) *state.DB {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state"), state.WithSync(state.SyncNever))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openChangelog(t *testing.T, brokers []string, topic string) *kafka.Changelog {
	t.Helper()
	cl, err := kafka.OpenChangelog(kafka.ClientConfig{Brokers: brokers}, topic, 2, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// checkpoint commits what fn changes in partition 0 of db, through the
// changelog, with split 0 at offset.
func checkpoint(t *testing.T, db *state.DB, cl *kafka.Changelog, offset int64, fn func(c *state.Counter, tm *state.Timers, p *state.Partition)) {
	t.Helper()
	p := db.Partition(0)
	c := state.NewCounter(p, "count")
	tm, err := state.NewTimers(p, "timers")
	if err != nil {
		t.Fatal(err)
	}
	fn(c, tm, p)
	b := db.NewBatch()
	defer b.Close()
	if err := p.Flush(b); err != nil {
		t.Fatal(err)
	}
	b.SetWatermark(0, offset*1000)
	b.SetOffset(0, offset)
	if err := cl.Append(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	db.ReleasePartition(0)
}

// TestChangelogRestore replicates checkpoints (writes, a timer, an
// erasure) to the changelog and restores them into other stores: from
// nothing, by catching up, and past a checkpoint cut short by a crash.
func TestChangelogRestore(t *testing.T) {
	brokers, _ := testBrokers(t)
	topic := uniqueName(t) + "-changelog"
	src := openDB(t)
	cl := openChangelog(t, brokers, topic)

	checkpoint(t, src, cl, 10, func(c *state.Counter, tm *state.Timers, _ *state.Partition) {
		for _, k := range []string{"u1", "u2", "u3"} {
			c.Add(k, 1)
			tm.Set(k, "end", 5000, 0)
		}
	})
	checkpoint(t, src, cl, 20, func(c *state.Counter, tm *state.Timers, p *state.Partition) {
		c.Add("u1", 5)
		tm.Delete("u2", "end")
		if err := p.EraseKey("u3"); err != nil {
			t.Fatal(err)
		}
	})
	want := dump(t, src, 0)
	if _, ok := want["offset"]; !ok || len(want) < 4 {
		t.Fatalf("unexpected source state: %q", want)
	}

	// Another process, with nothing, restores everything.
	fresh := openDB(t)
	if err := openChangelog(t, brokers, topic).Restore(fresh, 0); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, fresh, 0); !maps.Equal(got, want) {
		t.Fatalf("restored from nothing:\n got %q\nwant %q", got, want)
	}

	// The first process checkpoints again; the other catches up.
	checkpoint(t, src, cl, 30, func(c *state.Counter, tm *state.Timers, _ *state.Partition) {
		c.Add("u4", 7)
		tm.Set("u1", "end", 9000, 0)
	})
	want = dump(t, src, 0)
	if err := openChangelog(t, brokers, topic).Restore(fresh, 0); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, fresh, 0); !maps.Equal(got, want) {
		t.Fatalf("caught up:\n got %q\nwant %q", got, want)
	}

	// A checkpoint cut short: records reached the changelog, its marker
	// did not, and the store did not commit. A restore ignores them and
	// writes their keys again.
	var torn []string
	for k := range want {
		if k != "offset" {
			torn = append(torn, k)
		}
	}
	sendChangelogRecords(t, brokers, topic, 0, torn)
	again := openDB(t)
	if err := openChangelog(t, brokers, topic).Restore(again, 0); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, again, 0); !maps.Equal(got, want) {
		t.Fatalf("restored past a torn checkpoint:\n got %q\nwant %q", got, want)
	}
	// After the repair, the changelog alone gives the state again.
	last := openDB(t)
	if err := openChangelog(t, brokers, topic).Restore(last, 0); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, last, 0); !maps.Equal(got, want) {
		t.Fatalf("restored after the repair:\n got %q\nwant %q", got, want)
	}
	// The first process, whose state is the latest, keeps it.
	if err := cl.Restore(src, 0); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, src, 0); !maps.Equal(got, want) {
		t.Fatalf("the owner's state changed on restore:\n got %q\nwant %q", got, want)
	}
}

// sendChangelogRecords writes garbage values for keys into a changelog
// partition, as a checkpoint cut short would have left them.
func sendChangelogRecords(t *testing.T, brokers []string, topic string, p int32, keys []string) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = kafka.DefaultVersion
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var msgs []*sarama.ProducerMessage
	for _, k := range keys {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: p, Key: sarama.StringEncoder(k), Value: sarama.ByteEncoder([]byte("\x01garbage"))})
	}
	if err := prod.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}
