// Package connectors holds the embedded sources, sinks and dead-letter
// outputs of Sluice: JSONL files, standard streams and in-process Watermill
// GoChannels. Importing the package registers them with the pipeline
// registry under these YAML types:
//
//	source: {type: file, path: events.jsonl}          # FileSourceConfig
//	source: {type: stdin}                             # StdinSourceConfig
//	source: {type: channel, name: default, topic: t}  # ChannelConfig
//
//	sinks:
//	  - {id: out, type: file, path: out/outputs.jsonl, inputs: [...]}  # FileSinkConfig
//	  - {id: tty, type: stdout, inputs: [...]}                         # StdoutSinkConfig
//	  - {id: bus, type: channel, topic: outputs, inputs: [...]}        # ChannelConfig
//
//	dead_letter: {type: file, path: out/dead.jsonl}   # DeadLetterFileConfig
//	dead_letter: {type: stderr}                       # StderrDeadLetterConfig
//
// # Offsets and restarts
//
// The line sources (file, stdin) have one split, 0, and give each line the
// byte offset just past its end. The file source seeks to the committed
// offset on restart; stdin cannot seek and counts from the start of its
// input, so the runtime skips what the committed state reflects. The
// channel source counts messages, continuing after the committed offset,
// and acks each message once delivered: at most once across a crash.
//
// # Outputs
//
// The file sink and the file dead-letter output append to their file; their
// Flush, called before every checkpoint commit, writes the buffer and fsyncs
// (output before commit). After a crash the same file continues, and the
// records written again carry the same ids. Outputs on standard streams are
// written out at the end of every write and never synced.
//
// A Go program can use a GoChannel directly with NewChannelSource and
// NewChannelSink, or name one for specs with RegisterChannel.
package connectors
