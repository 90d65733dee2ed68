// Package kafka is Sluice's Kafka connector: a source over watermill-kafka's
// Subscriber in a consumer group (YAML type "kafka"), a sink and a
// dead-letter output over a batching watermill Publisher, the changelog
// that carries partitions' state between the processes of a group, and the
// tools around them: a local Kafka-protocol broker for trying it (StartDev,
// `sluice dev kafka`), ProduceJSONL (`sluice produce`) and Consume (`sluice
// consume`).
//
// Several `sluice run` processes with the same group split a topic's
// partitions, as Kafka Streams instances do: Kafka partition p feeds
// pipeline partition p, whose state is committed with the partition's
// offset in the local Pebble store and replicated to a compacted changelog
// topic, from which a process that is assigned the partition restores it.
// Exchanges (an operator grouping by another key than the event's) go
// through a repartition topic with one partition per pipeline partition
// (Repartition), read by the owner of each partition. See README.md beside
// this file.
package kafka
