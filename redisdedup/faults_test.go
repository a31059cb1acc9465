package redisdedup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/redisdedup"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// The fault-injection suite (issue 11): three Handler replicas share one
// real Redis, each through its own go-redis client and its own TCP proxy
// (faultProxy), while thousands of signed deliveries flow: every message
// is sent as two or three copies (distinct svix-ids, one event_id, as Svix
// and Tensorlake's at-least-once delivery produce), each copy to a random
// replica and retried after every non-2xx answer on Svix's schedule,
// compressed. One message in 50 has a callback that runs longer than the
// lease (its claim must be renewed), one in 40 a callback that fails its
// first run. Faults come in phases, then stop:
//
//	baseline    no fault
//	latency     every proxy: 40ms up, 0 to 400ms down (a tenth of the
//	            replies outlast the 400ms read timeout: go-redis resends
//	            the script, which Redis has run already)
//	resets      every proxy: a tenth of the commands reset, before or
//	            after Redis runs them
//	timeouts    replica 0: half of the connections stall, then close
//	partition   replica 1: no byte passes either way, for two leases
//	down        every proxy closed: connections refused
//
// The first three are faults through which Redis still answers within the
// lease; the last three are not. The goals, asserted:
//
//   - nothing is processed without a claim: every callback run finds its
//     message's key holding its own claim token in Redis, unless the read
//     came back more than a lease after the claim was requested (or last
//     renewed) and the process had stalled or the claim had been resent
//     meanwhile: a lease overrun, which no lease can prevent (a holder
//     paused for longer than its lease loses its claim), counted apart;
//   - no callback runs twice, or concurrently, while Redis answers within
//     the lease: a message run twice (two successful runs) or concurrently
//     must have had a Complete, Release or Renew fail (Redis did not answer
//     in time, or answered that the claim was lost: the Handler logs both
//     at error level); each replica's Deduplicator is wrapped to count them;
//   - no message is lost: once the faults stop, every copy of every message
//     is answered 2xx, and every message was processed;
//   - 409 and 503 only while faults last: before the first fault and from a
//     lease after the last, a copy is answered 2xx, or 500 by a callback
//     made to fail, or 409 while another claim on its message is in force
//     (as the deduplicators' answers show, each replica's being recorded),
//     or 503 for a timeout (of Redis or of the callback) while the test
//     process itself was starved of CPU: a goroutine that wakes every 10ms
//     measures how late it wakes, and a timeout during a stall of 50ms or
//     more is the machine's load, not a fault; any other 503 fails.
//
// It takes about 17 seconds, and is skipped with -short.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault-injection suite takes about 17s; skipped with -short")
	}
	addr := redisAddr(t)
	f := newFaultRig(t, addr)
	f.run(t)
	f.report(t)
	f.check(t)
}

// Fault-injection parameters.
const (
	faultReplicas    = 3
	faultMessages    = 500
	faultLease       = 3 * time.Second / 2
	faultReadTimeout = 400 * time.Millisecond
	faultSlowRun     = 3 * faultLease / 2 // how long the slow callbacks run
)

// faultSchedule is Svix's retry schedule (immediately, 5s, 5min, 30min,
// 2h, 5h, 10h, 10h), compressed 6000 times.
var faultSchedule = []time.Duration{
	0, time.Millisecond, 50 * time.Millisecond, 300 * time.Millisecond,
	1200 * time.Millisecond, 3 * time.Second, 6 * time.Second, 6 * time.Second,
}

// A faultPhase is a period during which some proxies misbehave.
type faultPhase struct {
	name   string
	dur    time.Duration
	severe bool // Redis may not answer within the lease
	start  func(f *faultRig) error
	stop   func(f *faultRig) error
}

type faultRig struct {
	addr     string
	direct   *redis.Client // unproxied, for the checks
	prefix   string
	secret   string
	signer   *tlwebhooktest.Signer
	proxies  []*faultProxy
	handlers []*tlwebhook.Handler
	logs     []*faultLogs
	phases   []faultPhase
	msgs     []*faultMsg

	mu      sync.Mutex
	windows []faultWindow // when each phase ran
	t0      time.Time
	end     time.Time // when the last fault stopped

	attempts    []faultAttempt
	noClaim     atomic.Int32 // callback runs that found no claim
	noClaimSeen []string     // what they found
	overruns    int          // callback runs that found their claim lapsed after a stall or a resend
	extraSends  int          // attempts beyond the schedule, after stalls
	overrunSeen []string     // what the first lease overruns found
	stalls      []faultStall // when the test process was starved of CPU
}

// A faultStall is a time the stall monitor woke late: from start to end
// no goroutine of the test could count on running.
type faultStall struct{ start, end time.Time }

// Stall monitor parameters: it sleeps faultTick at a time, and a wake-up
// at least faultStallMin late is a stall.
const (
	faultTick     = 10 * time.Millisecond
	faultStallMin = 50 * time.Millisecond
	// faultStallGrace is how long after the last fault a copy whose
	// schedule ran out during a stall is still sent.
	faultStallGrace = 45 * time.Second
)

// monitorStalls records the stalls of the test process until stop is
// closed.
func (f *faultRig) monitorStalls(stop <-chan struct{}) {
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-time.After(faultTick):
		}
		now := time.Now()
		if now.Sub(last)-faultTick >= faultStallMin {
			f.mu.Lock()
			f.stalls = append(f.stalls, faultStall{last.Add(faultTick), now})
			f.mu.Unlock()
		}
		last = now
	}
}

// stalled reports whether the process stalled at some time within [from,
// to]. The caller holds f.mu.
func (f *faultRig) stalled(from, to time.Time) bool {
	for _, s := range f.stalls {
		if !s.start.After(to) && !s.end.Before(from) {
			return true
		}
	}
	return false
}

// A faultSlot is what a Handler's deduplicator did for one delivery
// attempt. It travels in the request's context, which the Handler passes
// on to the deduplicator and to the callback, so that the callback knows
// its claim token and the sender why a 503 was answered.
type faultSlot struct {
	mu         sync.Mutex
	token      string
	claimStart time.Time
	alive      time.Time // the claim lives in Redis at least until then
	claimErr   error
}

type faultSlotKey struct{}

func slotFrom(ctx context.Context) *faultSlot {
	s, _ := ctx.Value(faultSlotKey{}).(*faultSlot)
	return s
}

type faultWindow struct {
	name       string
	severe     bool
	start, end time.Time
}

type faultAttempt struct {
	msg          int
	sent, answer time.Time
	status       int
	claimErr     error // the deduplicator's, if Claim failed
}

// faultMsg is one message: its payload, its copies and its callback runs.
type faultMsg struct {
	i       int
	key     string
	body    []byte
	copies  int
	slow    bool // its callback runs longer than the lease
	failing bool // its first callback run fails

	mu         sync.Mutex
	runs       []faultRun
	running    int
	concurrent bool
	copiesOK   int
	dedupErrs  int       // errors from Complete, Release and Renew
	lostErrs   int       // of which ErrClaimLost
	ops        []faultOp // what the deduplicators did for it
}

type faultRun struct {
	start, end time.Time
	ok         bool
}

// faultLogs counts a Handler's error-level records about lost claims.
type faultLogs struct {
	mu    sync.Mutex
	b     bytes.Buffer
	lost  int
	error int
}

func (l *faultLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := string(p)
	if strings.Contains(s, "level=ERROR") {
		l.error++
		if strings.Contains(s, tlwebhook.ErrClaimLost.Error()) {
			l.lost++
		}
	}
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func newFaultRig(t *testing.T, addr string) *faultRig {
	t.Helper()
	f := &faultRig{addr: addr, secret: tlwebhooktest.NewSecret()}
	f.direct = newClient(t, addr)
	f.prefix = testPrefix(t, f.direct)
	var err error
	f.signer, err = tlwebhooktest.NewSigner(f.secret)
	require.NoError(t, err)

	sample := tlwebhooktest.Sample(tlwebhook.EventTypeSandboxCreated)
	ev, err := tlwebhook.ParseEvent(sample)
	require.NoError(t, err)
	sampleID := ev.(*tlwebhook.SandboxEvent).EventID
	require.NotEmpty(t, sampleID)

	for range faultReplicas {
		p := newFaultProxy(t, addr)
		f.proxies = append(f.proxies, p)

		c := redis.NewClient(&redis.Options{
			Addr:            p.addr,
			DialTimeout:     time.Second, // refused at once while down; slow only when starved
			ReadTimeout:     faultReadTimeout,
			WriteTimeout:    faultReadTimeout,
			PoolTimeout:     time.Second,
			MaxRetries:      3,
			PoolSize:        50,
			MinRetryBackoff: 5 * time.Millisecond,
			MaxRetryBackoff: 50 * time.Millisecond,
			DialerRetries:   1,
		})
		t.Cleanup(func() { _ = c.Close() })
		d := newDedup(t, c, redisdedup.WithPrefix(f.prefix), redisdedup.WithLease(faultLease),
			redisdedup.WithRetention(time.Hour))
		f.warmUp(t, c, d)
		fd := &faultDedup{Deduplicator: d, rig: f, replica: len(f.proxies) - 1}
		logs := &faultLogs{}
		h, err := tlwebhook.NewHandler(f.secret,
			tlwebhook.WithDeduplicator(fd),
			tlwebhook.WithCallbackTimeout(3*faultLease),
			tlwebhook.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		require.NoError(t, err)
		h.OnSandboxEvent(f.callback)
		f.handlers = append(f.handlers, h)
		f.logs = append(f.logs, logs)
	}

	for i := range faultMessages {
		eventID := fmt.Sprintf("evt_fault-%06d", i)
		m := &faultMsg{
			i:       i,
			key:     eventID,
			body:    bytes.Replace(sample, []byte(sampleID), []byte(eventID), 1),
			copies:  2 + min(1, i%5/4), // every fifth message has three copies
			slow:    i%50 == 7,
			failing: i%40 == 3,
		}
		f.msgs = append(f.msgs, m)
	}

	all := func(fn func(p *faultProxy)) func(*faultRig) error {
		return func(f *faultRig) error {
			for _, p := range f.proxies {
				fn(p)
			}
			return nil
		}
	}
	f.phases = []faultPhase{
		{name: "baseline", dur: time.Second},
		{name: "latency", dur: 2 * time.Second,
			start: all(func(p *faultProxy) {
				p.upLatency.Store(int64(40 * time.Millisecond))
				p.downLatency.Store(int64(faultReadTimeout / 2))
			}),
			stop: all(func(p *faultProxy) { p.upLatency.Store(0); p.downLatency.Store(0) })},
		{name: "resets", dur: 2 * time.Second,
			start: all(func(p *faultProxy) { p.resetRate.Store(100) }),
			stop:  all(func(p *faultProxy) { p.resetRate.Store(0) })},
		{name: "timeouts", dur: 1500 * time.Millisecond, severe: true,
			start: func(f *faultRig) error { f.proxies[0].stall(true); return nil },
			stop:  func(f *faultRig) error { f.proxies[0].stall(false); return nil }},
		{name: "partition", dur: 2 * faultLease, severe: true,
			start: func(f *faultRig) error { f.proxies[1].blackhole.Store(true); return nil },
			stop:  func(f *faultRig) error { f.proxies[1].blackhole.Store(false); return nil }},
		{name: "down", dur: time.Second, severe: true,
			start: all(func(p *faultProxy) { p.down() }),
			stop: func(f *faultRig) error {
				var errs []error
				for _, p := range f.proxies {
					errs = append(errs, p.up())
				}
				return errors.Join(errs...)
			}},
	}
	return f
}

// faultDedup is a replica's Deduplicator, which records, per message, the
// errors of Complete, Release and Renew: the claim may then not have been
// kept (Redis did not answer, or answered that the claim was lost).
type faultDedup struct {
	*redisdedup.Deduplicator
	rig     *faultRig
	replica int
}

// faultOp is one deduplicator operation on a message.
type faultOp struct {
	op, token  string
	replica    int
	start, end time.Time
	res        tlwebhook.ClaimResult // of a claim
	err        error
}

func (o faultOp) String() string {
	return fmt.Sprintf("%s r%d %.6s %v..%v %v %v", o.op, o.replica, o.token, o.start.UnixMilli()%100000, o.end.UnixMilli()%100000, o.res, o.err)
}

// record keeps what an operation on key did, and counts the errors of
// Complete, Release and Renew.
func (d *faultDedup) record(key string, o faultOp) {
	m := d.rig.msgByKey(key)
	if m == nil {
		return
	}
	o.replica, o.end = d.replica, time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops = append(m.ops, o)
	if o.err != nil && o.op != "claim" {
		m.dedupErrs++
		if errors.Is(o.err, tlwebhook.ErrClaimLost) {
			m.lostErrs++
		}
	}
}

func (d *faultDedup) Claim(ctx context.Context, key string) (string, tlwebhook.ClaimResult, error) {
	o := faultOp{op: "claim", start: time.Now()}
	token, res, err := d.Deduplicator.Claim(ctx, key)
	o.token, o.res, o.err = token, res, err
	d.record(key, o)
	if s := slotFrom(ctx); s != nil {
		s.mu.Lock()
		s.claimStart, s.claimErr = o.start, err
		if err == nil && res == tlwebhook.ClaimAcquired {
			// Every run of the script, the last included, came after
			// the request; so did the expiry it set.
			s.token, s.alive = token, o.start.Add(faultLease)
		}
		s.mu.Unlock()
	}
	return token, res, err
}

func (d *faultDedup) Complete(ctx context.Context, key, token string) error {
	o := faultOp{op: "complete", token: token, start: time.Now()}
	o.err = d.Deduplicator.Complete(ctx, key, token)
	d.record(key, o)
	return o.err
}

func (d *faultDedup) Release(ctx context.Context, key, token string) error {
	o := faultOp{op: "release", token: token, start: time.Now()}
	o.err = d.Deduplicator.Release(ctx, key, token)
	d.record(key, o)
	return o.err
}

func (d *faultDedup) Renew(ctx context.Context, key, token string) error {
	o := faultOp{op: "renew", token: token, start: time.Now()}
	o.err = d.Deduplicator.Renew(ctx, key, token)
	d.record(key, o)
	if s := slotFrom(ctx); s != nil && o.err == nil {
		s.mu.Lock()
		if a := o.start.Add(faultLease); a.After(s.alive) {
			s.alive = a
		}
		s.mu.Unlock()
	}
	return o.err
}

// warmUp opens connections and loads the scripts, as a replica that has
// been serving for a while would have. No fault is on yet, but on a loaded
// machine a step may still outlast the read timeout: each is tried again,
// with a fresh key, for up to 20 seconds.
func (f *faultRig) warmUp(t *testing.T, c *redis.Client, d *redisdedup.Deduplicator) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { _ = c.Ping(ctx).Err() })
	}
	wg.Wait()
	steps := func() error {
		key := "warm-up-" + tlwebhooktest.NewMessageID()
		token, _, err := d.Claim(ctx, key)
		if err != nil {
			return err
		}
		if err := d.Renew(ctx, key, token); err != nil {
			return err
		}
		if err := d.Release(ctx, key, token); err != nil {
			return err
		}
		if token, _, err = d.Claim(ctx, key); err != nil {
			return err
		}
		return d.Complete(ctx, key, token)
	}
	deadline := time.Now().Add(20 * time.Second)
	err := steps()
	for err != nil && time.Now().Before(deadline) {
		t.Logf("warm-up: %v; trying again", err)
		time.Sleep(100 * time.Millisecond)
		err = steps()
	}
	require.NoError(t, err, "warm-up")
}

// callback is every replica's sandbox callback: it checks the claim, and
// records the run.
func (f *faultRig) callback(ctx context.Context, ev *tlwebhook.SandboxEvent) error {
	m := f.msgByKey(ev.EventID)
	if m == nil {
		return tlwebhook.Permanent(fmt.Errorf("unknown event %q", ev.EventID))
	}
	start := time.Now()
	v, err := f.direct.Get(context.WithoutCancel(ctx), f.prefix+m.key).Result()
	read := time.Now()
	if s := slotFrom(ctx); s == nil {
		f.noClaimFound(m, start, "no faultSlot in the callback's context: the Handler did not pass the request's context on")
	} else if s.mu.Lock(); err != nil || v != "claim:"+s.token {
		claimStart, alive, token := s.claimStart, s.alive, s.token
		s.mu.Unlock()
		f.mu.Lock()
		// The claim may have lapsed if the read came back later than
		// the claim is sure to live, and either the process stalled or
		// the claim took longer than a read timeout (it was resent, or
		// waited for a connection). Anything else is a bug.
		overrun := read.After(alive) && (f.stalled(claimStart, read) || start.Sub(claimStart) > faultReadTimeout)
		f.mu.Unlock()
		if overrun {
			f.mu.Lock()
			f.overruns++
			if len(f.overrunSeen) < 10 {
				m.mu.Lock()
				f.overrunSeen = append(f.overrunSeen, fmt.Sprintf("%s: found %q, %v; claim requested at %v, callback started %v later, read %v later (%s)",
					m.key, v, err, claimStart.Sub(f.t0).Milliseconds(), start.Sub(claimStart).Round(time.Millisecond), read.Sub(claimStart).Round(time.Millisecond), m.ops))
				m.mu.Unlock()
			}
			f.mu.Unlock()
		} else {
			f.noClaimFound(m, start, fmt.Sprintf("found %q, %v, wanted claim:%s; read %v after the claim was requested", v, err, token, read.Sub(claimStart).Round(time.Millisecond)))
		}
	} else {
		s.mu.Unlock()
	}
	m.mu.Lock()
	m.running++
	if m.running > 1 {
		m.concurrent = true
	}
	first := len(m.runs) == 0
	m.runs = append(m.runs, faultRun{start: start})
	idx := len(m.runs) - 1
	m.mu.Unlock()

	d := time.Duration(rand.IntN(5)) * time.Millisecond
	if m.slow {
		d = faultSlowRun
	}
	time.Sleep(d)
	ok := !(m.failing && first)

	m.mu.Lock()
	m.running--
	m.runs[idx].end, m.runs[idx].ok = time.Now(), ok
	m.mu.Unlock()
	if !ok {
		return errors.New("downstream unavailable (made to fail)")
	}
	return nil
}

// noClaimFound records a callback run that did not find its claim.
func (f *faultRig) noClaimFound(m *faultMsg, start time.Time, what string) {
	f.noClaim.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	m.mu.Lock()
	ops := fmt.Sprint(m.ops)
	m.mu.Unlock()
	f.noClaimSeen = append(f.noClaimSeen, fmt.Sprintf("%s at %v: %s (%s)", m.key, start.Sub(f.t0).Milliseconds(), what, ops))
}

func (f *faultRig) msgByKey(key string) *faultMsg {
	var i int
	if _, err := fmt.Sscanf(key, "evt_fault-%06d", &i); err != nil || i < 0 || i >= len(f.msgs) {
		return nil
	}
	return f.msgs[i]
}

// run plays the phases while the messages are sent, then waits for every
// copy to be answered 2xx or to exhaust its schedule.
func (f *faultRig) run(t *testing.T) {
	var total time.Duration
	for _, p := range f.phases {
		total += p.dur
	}
	stop := make(chan struct{})
	monitor := make(chan struct{})
	go func() { defer close(monitor); f.monitorStalls(stop) }()
	defer func() { close(stop); <-monitor }()
	f.t0 = time.Now()
	var senders sync.WaitGroup
	for _, m := range f.msgs {
		at := time.Duration(m.i) * total / time.Duration(len(f.msgs))
		for range m.copies {
			delay := at + time.Duration(rand.IntN(20))*time.Millisecond
			senders.Go(func() { f.send(m, delay) })
		}
	}
	for _, p := range f.phases {
		w := faultWindow{name: p.name, severe: p.severe, start: time.Now()}
		if p.start != nil {
			require.NoError(t, p.start(f), "start %s", p.name)
		}
		time.Sleep(p.dur)
		if p.stop != nil {
			require.NoError(t, p.stop(f), "stop %s", p.name)
		}
		w.end = time.Now()
		f.mu.Lock()
		f.windows = append(f.windows, w)
		f.mu.Unlock()
	}
	f.mu.Lock()
	f.end = time.Now()
	f.mu.Unlock()
	senders.Wait()
}

// send delivers one copy of m, first after delay, then after each non-2xx
// on the schedule, each time to a random replica, signed anew. Svix keeps
// retrying for days; the compressed schedule lasts 16.5s, which a stalled
// test process can spend without running: a copy whose schedule ran out
// while the process stalled is sent again every faultSchedule's last
// interval until faultStallGrace after the last fault.
func (f *faultRig) send(m *faultMsg, delay time.Duration) {
	msgID := tlwebhooktest.NewMessageID()
	time.Sleep(delay)
	first := time.Now()
	for i := 0; ; i++ {
		wait := faultSchedule[min(i, len(faultSchedule)-1)]
		if i >= len(faultSchedule) {
			f.mu.Lock()
			more := !f.end.IsZero() && time.Since(f.end) < faultStallGrace && f.stalled(first, time.Now())
			if more {
				f.extraSends++
			}
			f.mu.Unlock()
			if !more {
				return
			}
		}
		time.Sleep(wait)
		h := f.handlers[rand.IntN(len(f.handlers))]
		req := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", bytes.NewReader(m.body))
		req.Header.Set("Content-Type", "application/json")
		slot := &faultSlot{}
		req = req.WithContext(context.WithValue(req.Context(), faultSlotKey{}, slot))
		sent := time.Now()
		for name, values := range f.signer.HeaderFor(msgID, sent, m.body) {
			req.Header[name] = values
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		f.mu.Lock()
		slot.mu.Lock()
		claimErr := slot.claimErr
		slot.mu.Unlock()
		f.attempts = append(f.attempts, faultAttempt{msg: m.i, sent: sent, answer: time.Now(), status: rec.Code, claimErr: claimErr})
		f.mu.Unlock()
		if rec.Code/100 == 2 {
			m.mu.Lock()
			m.copiesOK++
			m.mu.Unlock()
			return
		}
	}
}

// faultFigures are the counts reported in SECURITY.md.
type faultFigures struct {
	messages, copies, sent, answered2xx int
	byStatus                            map[int]int
	runs, okRuns                        int
	twice, concurrent                   int // messages
	twiceUnexcused, concurrentUnexcused int // with no deduplicator error reported
	withDedupErrs                       int // messages with one
	neverProcessed, copiesNever2xx      int
	noClaim                             int
	outside                             map[int]int // statuses of attempts sent outside the faults
	unexplained409, outside503          int
	starved503                          int // outside the faults, timeouts while the process stalled
	outside503Seen                      []string
	overruns, stalls, extraSends        int
	longestStall                        time.Duration
	lostLogs, errorLogs                 int
	duration                            time.Duration
}

func (f *faultRig) figures() faultFigures {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := faultFigures{messages: len(f.msgs), sent: len(f.attempts), byStatus: map[int]int{}, outside: map[int]int{},
		noClaim: int(f.noClaim.Load()), duration: time.Since(f.t0), overruns: f.overruns, stalls: len(f.stalls), extraSends: f.extraSends}
	for _, s := range f.stalls {
		g.longestStall = max(g.longestStall, s.end.Sub(s.start))
	}
	firstFault, quiet := f.windows[1].start, f.end.Add(faultLease)
	for _, a := range f.attempts {
		g.byStatus[a.status]++
		if a.status/100 == 2 {
			g.answered2xx++
		}
		if a.sent.After(firstFault) && a.sent.Before(quiet) {
			continue
		}
		g.outside[a.status]++
		switch a.status {
		case http.StatusServiceUnavailable:
			// A timeout (Claim's, or the callback's if Claim succeeded)
			// while the process stalled is the machine's load.
			if (a.claimErr == nil || isTimeout(a.claimErr)) && f.stalled(a.sent, a.answer) {
				g.starved503++
			} else {
				g.outside503++
				if len(g.outside503Seen) < 10 {
					g.outside503Seen = append(g.outside503Seen, fmt.Sprintf("message %d sent at %v, answered %v later, stalled %v: %v",
						a.msg, a.sent.Sub(f.t0).Milliseconds(), a.answer.Sub(a.sent).Round(time.Millisecond), f.stalled(a.sent, a.answer), a.claimErr))
				}
			}
		case http.StatusConflict:
			if !f.msgs[a.msg].claimed(a.sent, a.answer) {
				g.unexplained409++
			}
		}
	}
	for _, m := range f.msgs {
		m.mu.Lock()
		g.copies += m.copies
		g.runs += len(m.runs)
		var ok []faultRun
		for _, r := range m.runs {
			if r.ok {
				ok = append(ok, r)
			}
		}
		g.okRuns += len(ok)
		if len(ok) == 0 {
			g.neverProcessed++
		}
		g.copiesNever2xx += m.copies - m.copiesOK
		// A claim not kept is reported: the deduplicator answered an
		// error for the message (Redis did not answer in time, or said
		// the claim was lost). Without one, a second run is a bug.
		reported := m.dedupErrs > 0
		if m.dedupErrs > 0 {
			g.withDedupErrs++
		}
		if len(ok) > 1 {
			g.twice++
			if !reported {
				g.twiceUnexcused++
			}
		}
		if m.concurrent {
			g.concurrent++
			if !reported {
				g.concurrentUnexcused++
			}
		}
		m.mu.Unlock()
	}
	for _, l := range f.logs {
		l.mu.Lock()
		g.lostLogs += l.lost
		g.errorLogs += l.error
		l.mu.Unlock()
	}
	return g
}

// claimed reports whether some claim on m, as its deduplicators' answers
// show, could have been in force at some time within [from, to]: a 409
// then is a copy meeting that claim, and not a claim blocking its own
// delivery (issue 11, defect 3) or one outliving its lease. A claim held
// by a token lasts from the claim's request until its Complete or Release
// returned, or else a lease after its last successful claim or renewal
// returned; a claim that failed may have been applied with its reply lost,
// so counts for a lease after it returned.
func (m *faultMsg) claimed(from, to time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	type held struct{ start, end time.Time }
	claims := map[string]*held{}
	var spans []held
	for _, o := range m.ops {
		switch {
		case o.op == "claim" && o.err != nil:
			spans = append(spans, held{o.start, o.end.Add(faultLease)})
		case o.op == "claim" && o.res == tlwebhook.ClaimAcquired:
			claims[o.token] = &held{o.start, o.end.Add(faultLease)}
		case o.op == "renew" && o.err == nil:
			if h := claims[o.token]; h != nil && o.end.Add(faultLease).After(h.end) {
				h.end = o.end.Add(faultLease)
			}
		case (o.op == "complete" || o.op == "release") && o.err == nil:
			if h := claims[o.token]; h != nil && o.end.Before(h.end) {
				h.end = o.end
			}
		}
	}
	for _, h := range claims {
		spans = append(spans, *h)
	}
	for _, h := range spans {
		if !h.start.After(to) && !h.end.Before(from) {
			return true
		}
	}
	return false
}

func (f *faultRig) report(t *testing.T) {
	g := f.figures()
	var phases []string
	for _, w := range f.windows {
		mark := ""
		if w.severe {
			mark = " (Redis may not answer within the lease)"
		}
		phases = append(phases, fmt.Sprintf("%s %v%s", w.name, w.end.Sub(w.start).Round(100*time.Millisecond), mark))
	}
	t.Logf("phases: %s", strings.Join(phases, ", "))
	t.Logf("messages %d (copies %d); deliveries sent %d, answered 2xx %d; by status %v",
		g.messages, g.copies, g.sent, g.answered2xx, g.byStatus)
	t.Logf("callbacks run %d (successful %d); messages run twice %d (with no deduplicator error %d), run concurrently %d (with no deduplicator error %d); never processed %d; copies never answered 2xx %d",
		g.runs, g.okRuns, g.twice, g.twiceUnexcused, g.concurrent, g.concurrentUnexcused, g.neverProcessed, g.copiesNever2xx)
	t.Logf("messages whose Complete, Release or Renew failed at least once: %d", g.withDedupErrs)
	t.Logf("runs without a claim %d, after a lease overrun %d; outside the faults (before the first, from a lease after the last): by status %v, 503 %d (and %d timeouts while the process stalled), unexplained 409 %d",
		g.noClaim, g.overruns, g.outside, g.outside503, g.starved503, g.unexplained409)
	f.mu.Lock()
	for _, o := range f.overrunSeen {
		t.Logf("lease overrun: %s", o)
	}
	f.mu.Unlock()
	t.Logf("stalls of the test process (%v or more): %d, the longest %v; attempts beyond the schedule after a stall %d",
		faultStallMin, g.stalls, g.longestStall.Round(time.Millisecond), g.extraSends)
	t.Logf("error-level log records %d, of which naming a lost claim %d; took %v", g.errorLogs, g.lostLogs, g.duration.Round(100*time.Millisecond))
}

func (f *faultRig) check(t *testing.T) {
	g := f.figures()
	f.mu.Lock()
	seen := f.noClaimSeen[:min(10, len(f.noClaimSeen))]
	f.mu.Unlock()
	assert.Zero(t, g.noClaim, "callbacks run without their claim (the first 10): %v", seen)
	assert.Zero(t, g.twiceUnexcused, "messages run twice although every Complete, Release and Renew of theirs succeeded")
	assert.Zero(t, g.concurrentUnexcused, "messages run concurrently although every Complete, Release and Renew of theirs succeeded")
	assert.Zero(t, g.neverProcessed, "messages never processed")
	assert.Zero(t, g.copiesNever2xx, "copies never answered 2xx")
	assert.Zero(t, g.outside503, "503 answers outside the faults (the first 10: %v)", g.outside503Seen)
	assert.Zero(t, g.unexplained409, "409 answers outside the faults with no other claim in force")
	// The suite must have bitten: faults turned deliveries away.
	assert.Positive(t, g.byStatus[http.StatusServiceUnavailable], "no 503 at all: the faults did not reach the Handlers")
	assert.Greater(t, g.sent, g.copies, "no retries at all")
}

// isTimeout reports whether err is a timeout: a network read, write or
// dial deadline, a context deadline, or a wait for a pooled connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrPoolTimeout) || (errors.As(err, &ne) && ne.Timeout())
}

// faultProxy is a TCP proxy in front of Redis whose faults switch on and
// off at once, for every connection, open or new:
//
//   - latency: each chunk up waits upLatency, each chunk down a random time
//     up to twice downLatency (uniform, so downLatency on average);
//   - resets: each command has a resetRate per mille chance of having its
//     connection reset (RST) instead of forwarded, or just after (so Redis
//     runs it and the reply is lost);
//   - stall: while on, half of the connections drop everything they carry
//     and close 300ms after the first chunk dropped (a stalled middlebox);
//   - blackhole: no byte passes either way; connections stay open, new
//     ones are accepted (a partition);
//   - down: the listener and every connection closed; up listens again on
//     the same address (Redis gone, then back).
//
// It is this test's own rather than toxiproxy's (github.com/Shopify/
// toxiproxy/v2, which the module proxy serves at v2.5.0 and which builds):
// under -race on two cores, toxiproxy's toxic removals block behind its
// per-link pipelines (a 2s latency phase lasted up to 12s), its accept
// loop dials Redis before accepting the next client (after a restart the
// clients' reconnections timed out), and it would add 16 modules
// (Prometheus, protobuf, zerolog) to this module's graph.
type faultProxy struct {
	upstream, addr string

	upLatency, downLatency atomic.Int64  // nanoseconds
	resetRate              atomic.Int32  // per mille
	blackhole              atomic.Bool   //
	stallEpoch             atomic.Uint64 // odd while stalling; bumped at each switch

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	p := &faultProxy{upstream: upstream, conns: map[net.Conn]struct{}{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = l.Addr().String()
	p.serve(l)
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.relay(c) })
		}
	})
}

// down closes the listener and every connection.
func (p *faultProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		_ = p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
}

// up listens again on the proxy's address.
func (p *faultProxy) up() error {
	var err error
	for range 50 {
		var l net.Listener
		if l, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(l)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

func (p *faultProxy) stall(on bool) {
	for {
		e := p.stallEpoch.Load()
		if (e%2 == 1) == on || p.stallEpoch.CompareAndSwap(e, e+1) {
			return
		}
	}
}

func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	_ = c.Close()
}

func (p *faultProxy) relay(down net.Conn) {
	if !p.track(down) {
		return
	}
	defer p.untrack(down)
	up, err := net.DialTimeout("tcp", p.upstream, time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	// stalls decides once per stall epoch whether this connection stalls.
	var stallMu sync.Mutex
	stallSeen, stalling := uint64(0), false
	stalls := func() bool {
		e := p.stallEpoch.Load()
		stallMu.Lock()
		defer stallMu.Unlock()
		if e != stallSeen {
			stallSeen, stalling = e, e%2 == 1 && rand.IntN(2) == 0
			if stalling {
				time.AfterFunc(300*time.Millisecond, func() { _ = down.Close(); _ = up.Close() })
			}
		}
		return stalling
	}
	reset := func() {
		for _, c := range []net.Conn{down, up} {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	}
	pump := func(src, dst net.Conn, toRedis bool) {
		defer func() { _ = src.Close(); _ = dst.Close() }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !p.blackhole.Load() && !stalls() {
				if toRedis {
					time.Sleep(time.Duration(p.upLatency.Load()))
					if rate := p.resetRate.Load(); rate > 0 && rand.Int32N(1000) < rate {
						if rand.IntN(2) == 0 {
							_, _ = dst.Write(buf[:n]) // Redis runs it; the reply is lost
						}
						reset()
						return
					}
				} else if d := p.downLatency.Load(); d > 0 {
					time.Sleep(time.Duration(rand.Int64N(2 * d)))
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { pump(down, up, true) })
	wg.Go(func() { pump(up, down, false) })
	wg.Wait()
}
