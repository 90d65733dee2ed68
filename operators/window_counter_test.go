package operators

import (
	"testing"

	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestWindowCounter(t *testing.T) { pipelinetest.RunScripts(t, "testdata/window_counter*.txt") }
