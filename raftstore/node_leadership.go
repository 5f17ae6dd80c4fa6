package raftstore

// Leadership notification. raft.LeaderCh drops values when the receiver is
// slow and serves a single receiver. Instead raft pushes every transition on
// Config.NotifyCh, one goroutine reads it, and each LeaderCh caller gets its
// own subscription that never blocks raft and never loses the meaning of
// what happened (see leaderSubscription.push).

// LeaderCh returns a new subscription to this node's leadership. The first
// value is the current state; then every change follows. A slow receiver
// never blocks raft and never misses the latest state: pending values are
// compacted, but a loss and regain of leadership it has not read yet is
// still delivered as false then true, so leader-only work is restarted. The
// channel receives false and is closed on Close. Each call allocates a
// subscription that lives until Close: call it once per consumer.
func (n *Node) LeaderCh() <-chan bool {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	sub := newLeaderSubscription()
	if n.subsClosed {
		close(sub.ch)
		return sub.ch
	}
	sub.push(n.leaderNow)
	n.leaderSubs = append(n.leaderSubs, sub)
	return sub.ch
}

// fanOutLeadership forwards raft's leadership transitions to subscribers
// until the node closes.
func (n *Node) fanOutLeadership(notifyCh <-chan bool) {
	defer close(n.fanoutDone)
	for {
		select {
		case isLeader := <-notifyCh:
			n.leaderMu.Lock()
			n.leaderNow = isLeader
			for _, sub := range n.leaderSubs {
				sub.push(isLeader)
			}
			n.leaderMu.Unlock()
		case <-n.closing:
			return
		}
	}
}

// closeLeaderSubscriptions tells subscribers the node no longer leads and
// closes their channels. Only called once the fan-out goroutine is gone.
func (n *Node) closeLeaderSubscriptions() {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if n.subsClosed {
		return
	}
	n.subsClosed = true
	n.leaderNow = false
	for _, sub := range n.leaderSubs {
		sub.push(false)
		close(sub.ch)
	}
	n.leaderSubs = nil
}

// leaderSubscription is one LeaderCh consumer. Only push sends on ch, always
// under Node.leaderMu, so push knows everything that is in the buffer.
type leaderSubscription struct {
	ch     chan bool // capacity 2: enough for "lost, then regained"
	last   bool      // last value queued
	primed bool      // whether anything was queued yet
}

func newLeaderSubscription() *leaderSubscription {
	return &leaderSubscription{ch: make(chan bool, 2)}
}

// push queues v without ever blocking. Repeated values are dropped, so the
// queued sequence alternates. When the buffer is full, push takes back the
// unread values and drops pairs from the front: in an alternating sequence
// removing a pair keeps both the final state and whether the state the
// consumer last saw was left and re-entered, which is all a consumer acts on.
func (s *leaderSubscription) push(v bool) {
	if s.primed && v == s.last {
		return
	}
	s.last, s.primed = v, true
	select {
	case s.ch <- v:
		return
	default:
	}
	var pending []bool
drain:
	for {
		select {
		case old := <-s.ch:
			pending = append(pending, old)
		default:
			break drain
		}
	}
	pending = append(pending, v)
	for len(pending) > cap(s.ch) {
		pending = pending[2:]
	}
	for _, p := range pending {
		s.ch <- p // cannot block: the buffer was just emptied and only push sends
	}
}
