//go:build race

package backendtest

// raceEnabled: the race detector slows the transpiled SQLite of
// modernc.org/sqlite by an order of magnitude, so the differential test runs
// its minimum (still 500 states) under -race.
const raceEnabled = true
