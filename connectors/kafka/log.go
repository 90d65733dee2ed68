package kafka

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// wmLogger adapts slog to watermill's LoggerAdapter, checking the level
// before it builds anything: the Subscriber logs at trace level for every
// message, and watermill's own slog adapter converts the fields first
// (about 10% of the consume path's CPU). Watermill's informational
// messages (subscribing, reconnecting) go to debug; its errors (a broker
// restarting) to warn, since the connectors retry.
type wmLogger struct{ l *slog.Logger }

func (w wmLogger) Error(msg string, err error, fields watermill.LogFields) {
	w.log(slog.LevelWarn, msg, fields, watermill.LogFields{"err": err})
}

func (w wmLogger) Info(msg string, fields watermill.LogFields) { w.log(slog.LevelDebug, msg, fields) }

func (w wmLogger) Debug(msg string, fields watermill.LogFields) {
	w.log(slog.LevelDebug-2, msg, fields)
}

func (w wmLogger) Trace(string, watermill.LogFields) {}

func (w wmLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return wmLogger{w.l.With(attrs(fields)...)}
}

func (w wmLogger) log(level slog.Level, msg string, fields ...watermill.LogFields) {
	if !w.l.Enabled(context.Background(), level) {
		return
	}
	var args []any
	for _, f := range fields {
		args = append(args, attrs(f)...)
	}
	w.l.Log(context.Background(), level, "watermill: "+msg, args...)
}

func attrs(f watermill.LogFields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}
