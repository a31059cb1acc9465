package tlwebhooktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlwebhook/tlwebhook"
)

// handlerScenarios are the scenarios of Handlers that share a
// deduplicator's store: one run of a callback among concurrent copies, a
// run again after a failure or a crash.
func handlerScenarios() []dedupScenario {
	return []dedupScenario{
		{name: "handlers run the callback once for concurrent copies of one message", run: checked(handlerCopies(false))},
		{name: "handlers run the callback once for concurrent messages of one event", run: checked(handlerCopies(true))},
		{name: "handlers run the callback again after a failure", run: checked(handlerRetry)},
		{name: "handlers run the callback once the lease of a crashed holder passes", lease: short, run: checked(handlerAfterCrash)},
	}
}

// eventTimeout bounds, in real time, a wait for something a scenario
// makes happen (a callback starting, a renewal): long enough for a loaded
// machine, and the scenario does not wait for it when it comes sooner.
const eventTimeout = time.Minute

// A replicaSet is n Handlers, as n processes of one service would be, each
// with a Deduplicator opened on the scenario's store, all running one
// sandbox callback; and the delivery they receive: a sample sandbox event,
// signed with a fresh secret.
type replicaSet struct {
	hs      []*tlwebhook.Handler
	signer  *Signer
	body    []byte
	eventID string // the key the Handlers deduplicate body on
}

func (r *dedupRun) replicas(n int, fn func(context.Context, *tlwebhook.SandboxEvent) error) (*replicaSet, error) {
	return r.replicasWith(n, replicaSetup{}, fn)
}

// replicaSetup adjusts the Handlers of a replicaSet.
type replicaSetup struct {
	// wrap, if set, returns the Deduplicator Handler i uses in place of d.
	wrap func(i int, d tlwebhook.Deduplicator) tlwebhook.Deduplicator
	// logger, if set, is the logger of Handler i; the default discards.
	logger func(i int) *slog.Logger
}

func (r *dedupRun) replicasWith(n int, setup replicaSetup, fn func(context.Context, *tlwebhook.SandboxEvent) error) (*replicaSet, error) {
	rs := &replicaSet{body: Sample(tlwebhook.EventTypeSandboxCreated)}
	ev, err := tlwebhook.ParseEvent(rs.body)
	if err != nil {
		return nil, err
	}
	sb, ok := ev.(*tlwebhook.SandboxEvent)
	if !ok || sb.EventID == "" {
		return nil, fmt.Errorf("the sample sandbox payload parsed as %T without an event_id", ev)
	}
	rs.eventID = sb.EventID
	secret := NewSecret()
	if rs.signer, err = NewSigner(secret); err != nil {
		return nil, err
	}
	for i := range n {
		d := r.open()
		if d == nil {
			return nil, errors.New("the open function of DeduplicatorSuite.New returned nil")
		}
		if setup.wrap != nil {
			d = setup.wrap(i, d)
		}
		logger := slog.New(slog.DiscardHandler)
		if setup.logger != nil {
			logger = setup.logger(i)
		}
		h, err := tlwebhook.NewHandler(secret,
			tlwebhook.WithDeduplicator(d),
			tlwebhook.WithLogger(logger))
		if err != nil {
			return nil, err
		}
		h.OnSandboxEvent(fn)
		rs.hs = append(rs.hs, h)
	}
	return rs, nil
}

// request returns a request delivering the sample as message msgID, signed
// now.
func (rs *replicaSet) request(msgID string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/tensorlake", bytes.NewReader(rs.body))
	req.Header.Set("Content-Type", "application/json")
	for name, values := range rs.signer.HeaderFor(msgID, time.Now(), rs.body) {
		req.Header[name] = values
	}
	return req
}

// serve has Handler i answer req and returns the status.
func (rs *replicaSet) serve(i int, req *http.Request) int {
	rec := httptest.NewRecorder()
	rs.hs[i%len(rs.hs)].ServeHTTP(rec, req)
	return rec.Code
}

// deliver has Handler i answer a delivery of message msgID.
func (rs *replicaSet) deliver(i int, msgID string) int { return rs.serve(i, rs.request(msgID)) }

// handlerCopies sends 50 concurrent copies of one delivery, spread over 8
// Handlers: the callback runs once. It holds until every other copy has
// been answered, so all of them meet the claim in progress and must get
// 409; copies sent after it finished get 2xx and run nothing. With
// sameEvent, the copies are distinct messages of one event, which the
// Handler deduplicates on its event_id.
func handlerCopies(sameEvent bool) func(*dedupRun) error {
	return func(r *dedupRun) error {
		const (
			handlers = 8
			copies   = 50
		)
		msgID := NewMessageID()
		id := func(int) string { return msgID }
		if sameEvent {
			id = func(i int) string { return msgID + "_" + strconv.Itoa(i) }
		}
		var runs, conflicts atomic.Int32
		othersAnswered := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(othersAnswered) }) }
		defer release()
		rs, err := r.replicas(handlers, func(context.Context, *tlwebhook.SandboxEvent) error {
			if runs.Add(1) > 1 {
				release() // a second run: no copy needs holding off any longer
			}
			select {
			case <-othersAnswered:
			case <-time.After(eventTimeout):
			}
			return nil
		})
		if err != nil {
			return err
		}

		statuses := make([]int, copies)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range copies {
			req := rs.request(id(i))
			wg.Go(func() {
				<-start
				statuses[i] = rs.serve(i, req)
				if statuses[i] == http.StatusConflict && conflicts.Add(1) == copies-1 {
					release()
				}
			})
		}
		close(start)
		wg.Wait()
		release()

		count := map[int]int{}
		for _, s := range statuses {
			count[s]++
		}
		if n := runs.Load(); n != 1 || count[http.StatusNoContent] != 1 || count[http.StatusConflict] != copies-1 {
			return fmt.Errorf("%d concurrent copies over %d handlers ran the callback %d times and were answered %v, want once, 204 once and 409 %d times",
				copies, handlers, n, count, copies-1)
		}
		for i := range handlers {
			if status := rs.deliver(i, id(copies+i)); status != http.StatusNoContent {
				return fmt.Errorf("a copy sent to handler %d after the callback finished got %d, want 204", i, status)
			}
		}
		if n := runs.Load(); n != 1 {
			return fmt.Errorf("copies sent after the callback finished ran it again: %d runs, want 1", n)
		}
		return nil
	}
}

// handlerRetry: a callback that fails on one replica releases its claim,
// so the retry, reaching another replica, runs it again; after a success,
// copies run nothing.
func handlerRetry(r *dedupRun) error {
	var runs atomic.Int32
	rs, err := r.replicas(3, func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	if err != nil {
		return err
	}
	msgID := NewMessageID()
	for i, want := range []struct {
		status int
		runs   int32
	}{
		{http.StatusInternalServerError, 1},
		{http.StatusNoContent, 2},
		{http.StatusNoContent, 2},
	} {
		status := rs.deliver(i, msgID)
		if n := runs.Load(); status != want.status || n != want.runs {
			return fmt.Errorf("attempt %d got %d with %d callback runs in all, want %d with %d", i+1, status, n, want.status, want.runs)
		}
	}
	return nil
}

// handlerAfterCrash: a replica that claimed the message and crashed leaves
// its claim behind; retries get 409 until the lease passes, then run. The
// crashed replica, were it to wake up, cannot release the new claim.
func handlerAfterCrash(r *dedupRun) error {
	var runs atomic.Int32
	var holding atomic.Bool
	hold := make(chan struct{})
	var once sync.Once
	finish := func() { once.Do(func() { close(hold) }) }
	defer finish()
	rs, err := r.replicas(2, func(context.Context, *tlwebhook.SandboxEvent) error {
		if runs.Add(1) == 1 && holding.Load() {
			<-hold
		}
		return nil
	})
	if err != nil {
		return err
	}
	crashed := r.open()
	if crashed == nil {
		return errors.New("the open function of DeduplicatorSuite.New returned nil")
	}
	start := r.now()
	staleToken, res, err := crashed.Claim(r.ctx, rs.eventID)
	if err != nil || res != tlwebhook.ClaimAcquired {
		return fmt.Errorf("claim of the replica that crashes: got %v, %v; want claimed", res, err)
	}
	crashedAt := span{start, r.now()}
	msgID := NewMessageID()

	status := rs.deliver(0, msgID)
	if status != http.StatusConflict || runs.Load() != 0 {
		if status == http.StatusNoContent && r.late(crashedAt, r.now()) {
			return fmt.Errorf("%w: the retry within the lease was answered after it", errTooSlow)
		}
		return fmt.Errorf("a retry within the lease of the crashed claim got %d and ran the callback %d times, want 409 and none", status, runs.Load())
	}

	r.sleepUntil(crashedAt.end.Add(r.period + r.margin))
	holding.Store(true)
	retryAt := span{start: r.now()}
	done := make(chan int, 1)
	go func() { done <- rs.deliver(1, msgID) }()
	for deadline := time.Now().Add(eventTimeout); runs.Load() == 0; {
		select {
		case status := <-done:
			return fmt.Errorf("the retry after the lease got %d without running the callback", status)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the retry after the lease did not run the callback within %v", eventTimeout)
		}
	}
	if err := r.settled("Release", crashed.Release(r.ctx, rs.eventID, staleToken), true); err != nil {
		return fmt.Errorf("the crashed replica's release: %w", err)
	}
	status = rs.deliver(0, msgID)
	if status != http.StatusConflict {
		if status == http.StatusNoContent && runs.Load() == 2 && r.late(retryAt, r.now()) {
			return fmt.Errorf("%w: the copy during the new run was answered after its lease", errTooSlow)
		}
		return fmt.Errorf("a copy while the retry runs, after the crashed replica released its stale token, got %d (%d runs), want 409", status, runs.Load())
	}
	finish()
	if status := <-done; status != http.StatusNoContent {
		return fmt.Errorf("the retry after the lease got %d, want 204", status)
	}
	if n := runs.Load(); n != 1 {
		return fmt.Errorf("callback runs: %d, want 1", n)
	}
	return nil
}

// waitFor polls cond every millisecond, for at most d of real time.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
