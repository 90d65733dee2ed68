package pipeline

import (
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// decodeFunc decodes an OperatorSpec.With or a ComponentSpec.Config into the
// config type a registration declared. at is where the block was written
// (or its owner, when the block has no position); file names the spec file.
type decodeFunc func(v any, file string, at Position) (any, *SpecError)

type operatorType struct {
	decode decodeFunc
	build  func(id string, cfg any) (Factory, error)
}

type connectorType[T any] struct {
	decode decodeFunc
	open   func(cfg any) (T, error)
}

// registry holds the registered operator and connector types. Registration
// normally happens in init functions; lookups happen when a plan is made.
var registry = struct {
	sync.RWMutex
	operators   map[string]operatorType
	sources     map[string]connectorType[Source]
	sinks       map[string]connectorType[Sink]
	deadLetters map[string]connectorType[DeadLetterSink]
}{
	operators:   map[string]operatorType{},
	sources:     map[string]connectorType[Source]{},
	sinks:       map[string]connectorType[Sink]{},
	deadLetters: map[string]connectorType[DeadLetterSink]{},
}

// RegisterOperator registers an operator type under the name a spec's
// `type:` uses. C is the type of the operator's `with:` block: the planner
// decodes the block strictly into a C (an unknown field or a wrong type is an
// error naming its line), calls its Validate() error method when C or *C has
// one, then calls build with the operator's id and the config. build checks
// what Validate did not and returns the factory of the operator's
// per-partition instances; the planner calls the factory once to learn
// whether the operator is a Rekeyer, so a factory should be cheap and leave
// resources to Open.
//
// RegisterOperator is safe for concurrent use; it is meant for init
// functions, and panics if typ is empty, build is nil or typ is already
// registered.
func RegisterOperator[C any](typ string, build func(id string, cfg C) (Factory, error)) {
	if build == nil {
		panic(fmt.Sprintf("pipeline: RegisterOperator %q: nil build function", typ))
	}
	t := operatorType{
		decode: decoderFor[C](),
		build: func(id string, cfg any) (Factory, error) {
			return build(id, cfg.(C))
		},
	}
	registry.Lock()
	defer registry.Unlock()
	register(registry.operators, "operator", typ, t)
}

// RegisterSource registers a source type under the name a spec's
// `source: {type: ...}` uses. C is the type of the source's settings, written
// beside `type`; they are decoded and validated as for RegisterOperator when
// the plan is made, and open is called when the runtime opens the source.
// It panics if typ is empty, open is nil or typ is already registered.
func RegisterSource[C any](typ string, open func(cfg C) (Source, error)) {
	registerConnector(registry.sources, "source", typ, open)
}

// RegisterSink registers a sink type under the name a sink's `type:` uses,
// like RegisterSource.
func RegisterSink[C any](typ string, open func(cfg C) (Sink, error)) {
	registerConnector(registry.sinks, "sink", typ, open)
}

// RegisterDeadLetter registers a dead-letter output type under the name a
// spec's `dead_letter: {type: ...}` uses, like RegisterSource.
func RegisterDeadLetter[C any](typ string, open func(cfg C) (DeadLetterSink, error)) {
	registerConnector(registry.deadLetters, "dead_letter", typ, open)
}

// OperatorTypes returns the registered operator types, sorted.
func OperatorTypes() []string { return registeredTypes(registry.operators) }

// SourceTypes returns the registered source types, sorted.
func SourceTypes() []string { return registeredTypes(registry.sources) }

// SinkTypes returns the registered sink types, sorted.
func SinkTypes() []string { return registeredTypes(registry.sinks) }

// DeadLetterTypes returns the registered dead-letter output types, sorted.
func DeadLetterTypes() []string { return registeredTypes(registry.deadLetters) }

func registerConnector[C, T any](m map[string]connectorType[T], kind, typ string, open func(cfg C) (T, error)) {
	if open == nil {
		panic(fmt.Sprintf("pipeline: register %s %q: nil open function", kind, typ))
	}
	t := connectorType[T]{
		decode: decoderFor[C](),
		open: func(cfg any) (T, error) {
			return open(cfg.(C))
		},
	}
	registry.Lock()
	defer registry.Unlock()
	register(m, kind, typ, t)
}

// register adds t to m; the caller holds the registry lock.
func register[T any](m map[string]T, kind, typ string, t T) {
	if typ == "" {
		panic(fmt.Sprintf("pipeline: register %s: empty type name", kind))
	}
	if _, dup := m[typ]; dup {
		panic(fmt.Sprintf("pipeline: %s type %q registered twice", kind, typ))
	}
	m[typ] = t
}

func registeredTypes[T any](m map[string]T) []string {
	registry.RLock()
	defer registry.RUnlock()
	types := make([]string, 0, len(m))
	for t := range m {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

func lookupOperator(typ string) (operatorType, bool) {
	registry.RLock()
	defer registry.RUnlock()
	t, ok := registry.operators[typ]
	return t, ok
}

func lookupConnector[T any](m map[string]connectorType[T], typ string) (connectorType[T], bool) {
	registry.RLock()
	defer registry.RUnlock()
	t, ok := m[typ]
	return t, ok
}

func decoderFor[C any]() decodeFunc {
	return func(v any, file string, at Position) (any, *SpecError) {
		c, err := decodeConfig[C](v, file, at)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// decodeConfig turns a With or Config value into a C:
//   - nil gives the zero C (a new value when C is a pointer type);
//   - a YAML node is decoded strictly, with its errors' positions;
//   - a C, or a *C, is used as it is;
//   - a map[string]any is decoded strictly through YAML.
//
// Then the config's Validate method, if any, is called; its error is
// reported at the block's position.
func decodeConfig[C any](v any, file string, at Position) (C, *SpecError) {
	var c C
	// target is what YAML decodes into: &c, or c itself when C is a pointer
	// type (decoding into a **T fails on mappings).
	target := any(&c)
	newC := func() {
		if t := reflect.TypeFor[C](); t.Kind() == reflect.Pointer {
			c = reflect.New(t.Elem()).Interface().(C)
			target = c
		}
	}
	newC()
	switch x := v.(type) {
	case nil:
	case ast.Node:
		if p := nodePos(x, file); p.Line > 0 {
			at = p
		}
		if err := yaml.NodeToValue(x, target, yaml.Strict()); err != nil {
			e := yamlSpecError(err, file, at, true)
			return c, &e
		}
	case *C:
		if x != nil {
			c = *x
		}
	case C:
		c = x
		if rv := reflect.ValueOf(x); !rv.IsValid() || rv.Kind() == reflect.Pointer && rv.IsNil() {
			newC()
		}
	case map[string]any:
		b, err := yaml.Marshal(x)
		if err != nil {
			return c, &SpecError{Pos: at, Msg: fmt.Sprintf("cannot encode config map: %v", err)}
		}
		if err := yaml.UnmarshalWithOptions(b, target, yaml.Strict()); err != nil {
			e := yamlSpecError(err, file, at, false)
			return c, &e
		}
	default:
		return c, &SpecError{Pos: at, Msg: fmt.Sprintf("config must be a %s, a pointer to one, a YAML node or a map[string]any; got %T", reflect.TypeFor[C](), v)}
	}
	if err := validateConfig(&c); err != nil {
		return c, &SpecError{Pos: at, Msg: err.Error()}
	}
	return c, nil
}

type validator interface{ Validate() error }

// validateConfig calls Validate on *c or c, whichever has it.
func validateConfig[C any](c *C) error {
	if v, ok := any(c).(validator); ok {
		return v.Validate()
	}
	if v, ok := any(*c).(validator); ok {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return nil
		}
		return v.Validate()
	}
	return nil
}
