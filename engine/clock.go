package engine

import "time"

// Clock tells the engine the time. Stores keep microseconds, so Now must be
// UTC truncated to microseconds: a time the engine passes to a store then
// compares equal to the time it reads back.
type Clock interface {
	Now() time.Time
}

// RealClock is the wall clock, in UTC, truncated to microseconds.
type RealClock struct{}

// Now returns time.Now in UTC, truncated to microseconds.
func (RealClock) Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
