package kafka

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/sluicehq/sluice/pipeline"
)

// maxProducerBytes caps what a producer puts in one record batch for one
// partition (sarama's Producer.MaxMessageBytes): a stock broker refuses
// batches over message.max.bytes, 1,048,588 bytes by default.
const maxProducerBytes = 1_000_000

// DefaultVersion is the Kafka protocol version the connectors speak unless
// a config's `version` says otherwise.
var DefaultVersion = sarama.V3_6_0_0

// ClientConfig holds the connection settings that every Kafka component
// (source, sink, dead-letter output) has, written inline beside `type`.
type ClientConfig struct {
	// Brokers are the bootstrap brokers, host:port.
	Brokers []string `yaml:"brokers"`
	// ClientID names this client in the brokers' logs and quotas. Default
	// "sluice".
	ClientID string `yaml:"client_id"`
	// Version is the Kafka version to speak ("3.6.0"). Default 3.6.0, which
	// brokers from 2.1 on accept for what Sluice uses.
	Version string `yaml:"version"`
	// TLS, when enabled, encrypts the connections.
	TLS *TLSConfig `yaml:"tls"`
	// SASL, when set, authenticates the connections.
	SASL *SASLConfig `yaml:"sasl"`
}

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	// Enabled turns TLS on (with the system's roots unless CAFile is set).
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of the certificate authorities to trust.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	// User is the SASL user name.
	User string `yaml:"user"`
	// Password is the SASL password. Prefer PasswordEnv, which keeps it
	// out of the spec file.
	Password string `yaml:"password"`
	// PasswordEnv names an environment variable that holds the password.
	PasswordEnv string `yaml:"password_env"`
}

// Validate checks the connection settings.
func (c ClientConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("brokers is required")
	}
	if c.Version != "" {
		if _, err := sarama.ParseKafkaVersion(c.Version); err != nil {
			return fmt.Errorf("version: %w", err)
		}
	}
	if t := c.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	if s := c.SASL; s != nil {
		switch s.Mechanism {
		case sarama.SASLTypePlaintext, sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512:
		default:
			return fmt.Errorf("sasl: mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
		}
		if s.User == "" {
			return errors.New("sasl: user is required")
		}
		if s.Password != "" && s.PasswordEnv != "" {
			return errors.New("sasl: set password or password_env, not both")
		}
	}
	return nil
}

// saramaConfig returns a sarama config with the connection settings.
func (c ClientConfig) saramaConfig() (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	if sc.ClientID == "" {
		sc.ClientID = "sluice"
	}
	sc.Version = DefaultVersion
	if c.Version != "" {
		v, err := sarama.ParseKafkaVersion(c.Version)
		if err != nil {
			return nil, fmt.Errorf("version: %w", err)
		}
		sc.Version = v
	}
	// Reconnect quickly after a broker restart.
	sc.Metadata.Retry.Max = 10
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond
	sc.Consumer.Retry.Backoff = 250 * time.Millisecond
	sc.Producer.Retry.Backoff = 250 * time.Millisecond
	sc.Net.DialTimeout = 5 * time.Second
	if t := c.TLS; t != nil && t.Enabled {
		tc, err := t.config()
		if err != nil {
			return nil, err
		}
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, tc
	}
	if s := c.SASL; s != nil {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = sarama.SASLMechanism(s.Mechanism)
		sc.Net.SASL.User = s.User
		sc.Net.SASL.Password = s.Password
		if s.PasswordEnv != "" {
			pw, ok := os.LookupEnv(s.PasswordEnv)
			if !ok {
				return nil, fmt.Errorf("sasl: environment variable %s is not set", s.PasswordEnv)
			}
			sc.Net.SASL.Password = pw
		}
		switch s.Mechanism {
		case sarama.SASLTypeSCRAMSHA256:
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha256.New)} }
		case sarama.SASLTypeSCRAMSHA512:
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha512.New)} }
		}
	}
	return sc, nil
}

func (t *TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// scramClient adapts xdg-go/scram to sarama.SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }

// SourceConfig configures the Kafka source (YAML type "kafka"): a topic
// read by a consumer group through watermill-kafka's Subscriber.
//
// Kafka partition p feeds pipeline partition p, so the topic must have
// exactly `partitions` partitions, keyed by the event key with the FNV-1a
// hash partitioner (sarama's, and watermill-kafka's partitioning
// marshaler's; `sluice produce` uses it). Several `sluice run` processes
// with the same group share the partitions; a partition's state follows it
// through the changelog topic.
type SourceConfig struct {
	ClientConfig `yaml:",inline"`
	// Topic is the topic of events.
	Topic string `yaml:"topic"`
	// Group is the consumer group. Processes with the same group split the
	// topic's partitions.
	Group string `yaml:"group"`
	// SessionTimeout is how long the group waits for a member that stopped
	// heart-beating (a crashed process) before its partitions move to the
	// others: they stall that long. Default 10s; brokers bound it
	// (group.min/max.session.timeout.ms).
	SessionTimeout pipeline.Duration `yaml:"session_timeout"`
	// HeartbeatInterval is how often the member tells the group it lives.
	// Default a third of the session timeout.
	HeartbeatInterval pipeline.Duration `yaml:"heartbeat_interval"`
	// ChangelogTopic is the compacted topic that carries the state of the
	// partitions between processes. Default "<pipeline name>-changelog";
	// it is created (with as many partitions as the pipeline) if missing.
	ChangelogTopic string `yaml:"changelog_topic"`
	// BatchSize caps the messages handed to the pipeline at once. Default
	// 1024.
	BatchSize int `yaml:"batch_size"`
	// Linger is how long the source waits for more messages before it
	// hands a batch over. Default 2ms.
	Linger pipeline.Duration `yaml:"linger"`
	// RepartitionPurgeDelay is how long after a checkpoint commits the
	// exchanges it applied are deleted from the repartition topic
	// (DeleteRecords, as Kafka Streams purges its repartition topics).
	// Default 30s: longer than a process that lost its partitions without
	// noticing yet may go on checkpointing (Sluice has no fencing). If the
	// brokers refuse the deletion, the topic's retention bounds it.
	RepartitionPurgeDelay pipeline.Duration `yaml:"repartition_purge_delay"`
	// Bounded ends the run once every partition is read up to the end
	// offset it had when the run started (in a group: once every partition
	// is, by whichever member owns it): every window closes and every
	// timer fires, as at the end of a file. For backfills and tests.
	Bounded bool `yaml:"bounded"`
}

// Validate checks the config.
func (c SourceConfig) Validate() error {
	if err := c.ClientConfig.Validate(); err != nil {
		return fmt.Errorf("kafka source: %w", err)
	}
	switch {
	case c.Topic == "":
		return errors.New("kafka source: topic is required")
	case c.Group == "":
		return errors.New("kafka source: group is required (the consumer group whose members split the partitions)")
	case c.SessionTimeout < 0 || c.HeartbeatInterval < 0 || c.Linger < 0 || c.BatchSize < 0 || c.RepartitionPurgeDelay < 0:
		return errors.New("kafka source: session_timeout, heartbeat_interval, linger, batch_size and repartition_purge_delay must not be negative")
	case c.HeartbeatInterval > 0 && c.SessionTimeout > 0 && c.HeartbeatInterval >= c.SessionTimeout:
		return errors.New("kafka source: heartbeat_interval must be shorter than session_timeout")
	}
	return nil
}

// SinkConfig configures the Kafka sink (YAML type "kafka"): each output
// record is one message whose key is the record's key (hashed with FNV-1a
// to a partition) and whose value is the record's JSON; the record's id is
// the message's Watermill UUID (header "_watermill_message_uuid").
//
// Records are sent in batches (SyncProducer.SendMessages) by a background
// sender as they come; a checkpoint waits until everything written before
// it is acknowledged by the brokers (output before commit). A crash
// replays and sends again the records since the last checkpoint, with the
// same ids: consumers deduplicate by id.
type SinkConfig struct {
	ClientConfig `yaml:",inline"`
	// Topic is the output topic.
	Topic string `yaml:"topic"`
	// BatchSize caps the messages of one produce call. Default 1000.
	BatchSize int `yaml:"batch_size"`
	// Acks is how many replicas acknowledge a write: all (default),
	// leader or none.
	Acks string `yaml:"acks"`
	// Compression is none (default), gzip, snappy, lz4 or zstd.
	Compression string `yaml:"compression"`
	// RetryTimeout is how long sending is retried (a broker restarting)
	// before the run fails. Default 2m.
	RetryTimeout pipeline.Duration `yaml:"retry_timeout"`
}

// Validate checks the config.
func (c SinkConfig) Validate() error {
	if err := c.ClientConfig.Validate(); err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	if c.Topic == "" {
		return errors.New("kafka sink: topic is required")
	}
	if _, err := parseAcks(c.Acks); err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	if _, err := parseCompression(c.Compression); err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	if c.BatchSize < 0 || c.RetryTimeout < 0 {
		return errors.New("kafka sink: batch_size and retry_timeout must not be negative")
	}
	return nil
}

// DeadLetterConfig configures the Kafka dead-letter output (YAML type
// "kafka"): each input the pipeline could not process becomes a message
// whose value is the raw input and whose headers say why
// ("sluice_reason") and where it came from ("sluice_split",
// "sluice_offset").
type DeadLetterConfig = SinkConfig

func parseAcks(s string) (sarama.RequiredAcks, error) {
	switch s {
	case "", "all":
		return sarama.WaitForAll, nil
	case "leader":
		return sarama.WaitForLocal, nil
	case "none":
		return sarama.NoResponse, nil
	}
	return 0, fmt.Errorf("acks %q is not all, leader or none", s)
}

func parseCompression(s string) (sarama.CompressionCodec, error) {
	switch s {
	case "", "none":
		return sarama.CompressionNone, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	case "zstd":
		return sarama.CompressionZSTD, nil
	}
	return 0, fmt.Errorf("compression %q is not none, gzip, snappy, lz4 or zstd", s)
}
