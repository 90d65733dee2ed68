package pipeline

import (
	"math"
	"strconv"
)

// AppendJSONFloat appends f as a JSON number, formatted as encoding/json
// does (no exponent below 1e21); NaN and infinities, which JSON cannot
// hold, become null.
func AppendJSONFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}
