package kafka

import (
	"testing"

	"github.com/IBM/sarama"
)

// TestRetriable tells the produce errors that may pass by themselves (a
// leader moving) from those that will not (a message too large, on the
// broker or already in the producer).
func TestRetriable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{sarama.ErrNotLeaderForPartition, true},
		{sarama.ErrOutOfBrokers, true},
		{sarama.ErrMessageSizeTooLarge, false},
		{sarama.ErrTopicAuthorizationFailed, false},
		{sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes"), false},
	} {
		if got := retriable(tc.err); got != tc.want {
			t.Errorf("retriable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
