//go:build !unix

package benchmarks

import "time"

// ProcessCPU returns 0: the CPU time is not measured on this system.
func ProcessCPU() time.Duration { return 0 }
