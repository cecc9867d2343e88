// Package logsink holds Buffer, the log sink tests share: code under test
// writes its logs from its own goroutines while the test reads them. It is
// internal because it is test plumbing, not part of taskerd's API; it lives
// in its own package so that every test package (and the example plugins'
// tests) can use the one copy.
package logsink

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String. The zero
// value is ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
