package operators

import (
	"testing"

	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestFilter(t *testing.T)     { pipelinetest.RunScripts(t, "testdata/filter*.txt") }
func TestKeyCounter(t *testing.T) { pipelinetest.RunScripts(t, "testdata/key_counter*.txt") }
