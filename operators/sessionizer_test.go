package operators

import (
	"testing"

	"github.com/sluicehq/sluice/pipeline/pipelinetest"
)

func TestSessionizer(t *testing.T) { pipelinetest.RunScripts(t, "testdata/sessionizer*.txt") }
