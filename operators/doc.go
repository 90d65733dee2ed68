// Package operators holds Sluice's built-in operators, one file each: its
// config struct, its registration and its logic. Importing the package
// registers them all. Each is tested with a data-driven script in testdata/
// that reads like its spec; see harness_test.go for the commands.
//
// To write your own operator, copy filter.go (stateless) or key_counter.go
// (keyed state): implement pipeline.Operator, and pipeline.TimerHandler or
// pipeline.Rekeyer when you need timers or a grouping of your own, and
// register it with pipeline.RegisterOperator.
package operators
