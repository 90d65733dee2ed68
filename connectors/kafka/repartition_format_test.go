package kafka

import (
	"reflect"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/pipeline"
)

// TestExchangeBatchRoundTrip encodes exchange messages into one batch and
// decodes them back; a damaged batch or another format is an error.
func TestExchangeBatchRoundTrip(t *testing.T) {
	sent := []pipeline.ExchangeMessage{
		{Partition: 3, Kind: pipeline.ExchangeEvent, Operator: 2, OperatorID: "views_1h", Origin: 5,
			Position: pipeline.ExchangePosition{Space: 0, Offset: 123456789, Index: 0}, Key: "p-1", Payload: []byte(`{"event_id":"e-1"}`)},
		{Partition: 3, Kind: pipeline.ExchangeRecord, Operator: 4, OperatorID: "totals", Origin: 0,
			Position: pipeline.ExchangePosition{Space: 1, Offset: 7, Index: 3}, Key: "", Payload: []byte(`{"id":"r"}`)},
		{Partition: 3, Kind: pipeline.ExchangeWatermark, Operator: 2, OperatorID: "views_1h", Origin: 5, Watermark: -1},
		{Partition: 3, Kind: pipeline.ExchangeWatermark, Operator: 2, OperatorID: "views_1h", Origin: 7, Watermark: 1 << 62},
	}
	var value []byte
	for i := range sent {
		value = appendEntry(value, &sent[i])
	}
	msg := func(v []byte, format string) *sarama.ConsumerMessage {
		return &sarama.ConsumerMessage{Partition: 3, Offset: 42, Value: v,
			Headers: []*sarama.RecordHeader{{Key: []byte("other"), Value: []byte("x")}, {Key: []byte(HeaderExchange), Value: []byte(format)}}}
	}
	got, err := DecodeExchangeMessage(msg(value, exchangeFormat))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]pipeline.ExchangeMessage, len(sent))
	for i, m := range sent {
		m.Offset, m.More = 42, i < len(sent)-1
		want[i] = m
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
	for _, tc := range []struct {
		name, format string
		value        []byte
		want         string
	}{
		{"truncated", exchangeFormat, value[:len(value)-3], "entry 4: truncated entry"},
		{"cut in a payload", exchangeFormat, value[:20], "entry 1: truncated entry"},
		{"unknown kind", exchangeFormat, append([]byte{9}, value[1:]...), "entry 1: unknown kind 9"},
		{"empty", exchangeFormat, nil, "no entries"},
		{"another format", "2", value, `format "2"`},
		{"no header", "", value, `format ""`},
	} {
		m := msg(tc.value, tc.format)
		if tc.format == "" {
			m.Headers = nil
		}
		if _, err := DecodeExchangeMessage(m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
