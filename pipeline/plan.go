package pipeline

// Factory makes the instance of an operator for one partition.
type Factory func() Operator

// Plan is a validated spec, ready to run: operators resolved to factories in
// topological order, edges, sinks and connectors ready to open. Make one with
// NewPlan.
type Plan struct {
	Spec *Spec
	// Source opens the source.
	Source Opener[Source]
	// DeadLetter opens the dead-letter output; nil when the spec has none
	// (bad input is then counted and logged, not kept).
	DeadLetter Opener[DeadLetterSink]
	// Operators in topological order: an operator comes after its inputs.
	Operators []*PlannedOperator
	Sinks     []*PlannedSink
}

// Opener opens a connector whose config the planner has decoded and checked.
type Opener[T any] func() (T, error)

// PlannedOperator is one operator of a Plan.
type PlannedOperator struct {
	ID   string
	Type string
	// Index is the operator's position in Plan.Operators.
	Index int
	// Inputs are the indexes of the upstream operators; empty means the
	// operator reads the source.
	Inputs []int
	// Outputs are the indexes of the downstream operators.
	Outputs []int
	// Sinks are the indexes (in Plan.Sinks) of the sinks that take the
	// operator's output.
	Sinks []int
	// New makes the operator's instance for one partition.
	New Factory
	// Rekeyed is true when the operator implements Rekeyer: an exchange
	// routes its inputs.
	Rekeyed bool
	// Reads holds the optional event fields the operator reads, and
	// Forwards is true when it may forward events (EventFieldsReader).
	Reads    EventFields
	Forwards bool
}

// PlannedSink is one sink of a Plan.
type PlannedSink struct {
	ID     string
	Type   string
	Open   Opener[Sink]
	Inputs []int
}

// HasExchanges says whether some operator groups by another key than the
// event's, so that the plan has exchanges.
func (p *Plan) HasExchanges() bool {
	for _, po := range p.Operators {
		if po.Rekeyed {
			return true
		}
	}
	return false
}
