package definition

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is a workflow version, semver MAJOR.MINOR.PATCH. Pre-release and
// build suffixes are not accepted: a request that names no version gets the
// highest one loaded, and that rule should never pick a pre-release.
type Version struct {
	Major, Minor, Patch int
}

var errVersionSyntax = errors.New("a version is MAJOR.MINOR.PATCH, three whole numbers without leading zeros, e.g. 1.2.0")

// ParseVersion reads MAJOR.MINOR.PATCH.
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("%q is not a version: %w", s, errVersionSyntax)
	}
	var nums [3]int
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("%q is not a version: %w", s, errVersionSyntax)
		}
		n, err := strconv.Atoi(p)
		if err != nil { // only overflow is left
			return Version{}, fmt.Errorf("%q is not a version: %s is too large", s, p)
		}
		nums[i] = n
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Compare returns -1, 0 or +1 as v is lower than, equal to or higher than o.
func (v Version) Compare(o Version) int {
	if c := cmp.Compare(v.Major, o.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Minor, o.Minor); c != 0 {
		return c
	}
	return cmp.Compare(v.Patch, o.Patch)
}
