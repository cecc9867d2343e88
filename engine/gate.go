package engine

import (
	"sync"
	"time"
)

// gate orders this node's claims with its writes (step results, task
// creations, operator actions, lease recoveries: everything that may make
// a step ready) without making either wait for the other's database round
// trips more than the two rules below need:
//
//  1. Events: a write that committed before a claim's snapshot, and so may
//     have made ready a step that claim takes, publishes its events before
//     the claim's. A write registers (begin) before its store call and
//     leaves (end) once its events are published; when a claim's store call
//     returns, every write that can have committed before its snapshot is
//     registered, so the claim's events are published once those have
//     left (by the last of them to leave: the claim does not wait), and
//     writes registered after the claim returned publish after them.
//
//  2. Instants: a claimed step's started_at (the claim's now) is never
//     earlier than the instant of a write it may have seen (a parent's
//     processed_at). The claim reads its now when it starts; a write whose
//     instant is later does not begin until the claim's store call has
//     returned, so the claim cannot have seen it. Writes whose instant is
//     not later run alongside the claim.
//
// Before, one RWMutex did both: a claim waited for every write in flight to
// commit, and held every new write back, for the whole of its own store
// call, so claims and writes ran one after the other.
type gate struct {
	mu   sync.Mutex
	cond *sync.Cond

	claiming bool      // a claim's store call is running
	claimNow time.Time // that claim's now

	next    uint64              // sequence of the next write to begin
	active  map[uint64]struct{} // writes begun and not ended
	pending []pendingClaim      // claims' events not yet published, in claim order
}

// pendingClaim is a claim's events, waiting for the writes that began
// before the claim's store call returned (sequences below upto) to end.
type pendingClaim struct {
	upto   uint64
	events []Event
}

func newGate() *gate {
	g := &gate{active: map[uint64]struct{}{}, next: 1}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// write is one registered write.
type write struct {
	g   *gate
	seq uint64
}

// begin registers a write whose instant is now, waiting while a claim
// whose now is earlier than it runs (rule 2).
func (g *gate) begin(now time.Time) write {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.claiming && now.After(g.claimNow) {
		g.cond.Wait()
	}
	return g.register()
}

// beginNow waits for no claim to be running, then reads the write's
// instant from clock and registers it: for writes that read their instant
// at the last moment.
func (g *gate) beginNow(clock func() time.Time) (write, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.claiming {
		g.cond.Wait()
	}
	return g.register(), clock()
}

func (g *gate) register() write {
	w := write{g: g, seq: g.next}
	g.next++
	g.active[w.seq] = struct{}{}
	return w
}

// end publishes the write's events (none when it failed) and unregisters
// it. A write that began after a claim's store call returned publishes
// after that claim's events (rule 1).
func (w write) end(publish func(...Event), events []Event) {
	g := w.g
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.pending) > 0 && g.pending[0].upto <= w.seq {
		g.cond.Wait()
	}
	publish(events...)
	delete(g.active, w.seq)
	g.flush(publish)
	g.cond.Broadcast()
}

// startClaim marks a claim's store call as running and returns its now.
func (g *gate) startClaim(clock func() time.Time) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.claiming = true
	g.claimNow = clock()
	return g.claimNow
}

// endClaim marks the claim's store call as returned, lets the writes it
// held back begin, and publishes the claim's events once every write that
// began before has ended, before the events of any write that begins from
// now on. It does not wait: the last of those writes to end publishes them.
func (g *gate) endClaim(publish func(...Event), events []Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.claiming = false
	if len(events) > 0 {
		g.pending = append(g.pending, pendingClaim{upto: g.next, events: events})
		g.flush(publish)
	}
	g.cond.Broadcast()
}

// flush publishes, in order, the pending claims' events whose earlier
// writes have all ended.
func (g *gate) flush(publish func(...Event)) {
	for len(g.pending) > 0 && !g.anyBefore(g.pending[0].upto) {
		publish(g.pending[0].events...)
		g.pending[0] = pendingClaim{}
		g.pending = g.pending[1:]
	}
}

func (g *gate) anyBefore(seq uint64) bool {
	for s := range g.active {
		if s < seq {
			return true
		}
	}
	return false
}
