//go:build race

package store

// raceEnabled is true under the race detector, which makes SQLite (C
// translated to Go) about 20 times slower: the long tests scale down.
const raceEnabled = true
