// Package riverinbox is a durable inbox for Tensorlake webhooks on River
// (github.com/riverqueue/river), the Go job queue on PostgreSQL or SQLite.
//
// With an [Inbox] installed by [tlwebhook.WithInbox], a [tlwebhook.Handler]
// answers a verified delivery with 204 as soon as the delivery is committed
// to River's job table, and 503 when it could not be (Svix retries). River's
// workers then run the Handler's callbacks through [NewWorker], each inside a
// database transaction that also completes the job: a callback that writes
// through [TxFromContext] has its writes committed together with the job's
// completion, exactly once, even when a process is killed at any instant.
//
// # Set-up
//
// River's tables are created by River's own migrations, before any client
// runs: the command line (river migrate-up --database-url "$DATABASE_URL")
// or, in the program, rivermigrate:
//
//	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
//	_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
//
// Then a client to insert with, the Handler, and a client that works:
//
//	ins, _ := river.NewClient(riverpgxv5.New(pool), &river.Config{})
//	h, _ := tlwebhook.NewHandler(secret, tlwebhook.WithInbox(riverinbox.New(ins)))
//	h.OnJobCompleted(func(ctx context.Context, ev *tlwebhook.JobCompleted) error {
//		tx, _ := riverinbox.TxFromContext[pgx.Tx](ctx)
//		_, err := tx.Exec(ctx, `insert into parsed(job_id) values ($1)`, ev.JobID)
//		return err
//	})
//	jobTimeout, rescueAfter := riverinbox.Timeouts(tlwebhook.DefaultCallbackTimeout)
//	workers := river.NewWorkers()
//	river.AddWorker(workers, riverinbox.NewWorker[pgx.Tx](h))
//	wc, _ := river.NewClient(riverpgxv5.New(pool), &river.Config{
//		Workers:                     workers,
//		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}},
//		CompletedJobRetentionPeriod: riverinbox.MinRetention,
//		CancelledJobRetentionPeriod: riverinbox.MinRetention,
//		JobTimeout:                  jobTimeout,
//		RescueStuckJobsAfter:        rescueAfter,
//	})
//	_ = wc.Start(ctx)
//
// One client can also do both: create it with an empty [river.Workers]
// bundle and its Queues, build the Handler on [New](client), then add
// [NewWorker](h) to the bundle before calling Start. On SQLite, prefer that:
// SQLite has no LISTEN/NOTIFY, so a separate working client only sees new
// jobs when it polls (every FetchPollInterval, one second by default),
// whereas a client that inserted the job itself wakes its own workers.
//
// # Uniqueness
//
// Each delivery is inserted as a job of kind [Kind] whose [Args] carry the
// [tlwebhook.Delivery] and the raw payload, unique by the delivery's
// [tlwebhook.Delivery.IdempotencyKey] (River's UniqueOpts: ByArgs on that key
// alone, ByState every job state). While a job with the same key is in River's
// table, in any state, completed, cancelled and discarded included, a second
// insert records nothing and [Inbox.Enqueue] returns nil: Svix's retries and
// duplicate copies of a message run its callback once. A row leaves the table
// only when River's job cleaner deletes it, after CompletedJobRetentionPeriod
// (completed jobs), CancelledJobRetentionPeriod (cancelled) or
// DiscardedJobRetentionPeriod (discarded) of the client that runs River's
// maintenance: those periods are the deduplication window. River's defaults
// are 24 hours, 24 hours and 7 days; Svix retries a message for about 28
// hours, so set the first two to at least [MinRetention].
//
// The window is deliberately not a River ByPeriod: ByPeriod rounds the
// insertion time down to a multiple of the period, so a copy that arrives just
// after a period boundary would get a new key and run again.
//
// # Client settings that matter
//
//   - CompletedJobRetentionPeriod and CancelledJobRetentionPeriod: at least
//     [MinRetention] (see Uniqueness).
//   - JobTimeout (default one minute) bounds a job's run; keep it above the
//     Handler's callback timeout ([tlwebhook.WithCallbackTimeout]), which
//     applies inside [tlwebhook.Handler.Process] as it does in ServeHTTP.
//     Either deadline rolls the transaction back and the job is retried.
//   - RescueStuckJobsAfter (default one hour): a job whose process died while
//     running it is retried after this long. Its transaction was rolled back
//     by the database when the connection dropped, so nothing was committed.
//     [Timeouts] derives both from the callback timeout, so that such a
//     delivery runs again within about a minute instead of an hour.
//   - MaxAttempts (default 25, with River's backoff about three weeks) and
//     RetryPolicy: once a delivery is in the inbox, Svix is done with it and
//     River retries on its own schedule; after the last attempt the job is
//     discarded (retry it from River UI, see Operating).
//   - The database pool: each running job holds one connection for its
//     transaction, so give the pool a few more connections than the sum of
//     MaxWorkers (pgxpool's default is four, or the number of CPUs).
//   - SQLite: River recommends a pool of one connection
//     (db.SetMaxOpenConns(1)). With one connection, a callback must use the
//     transaction from [TxFromContext], never the pool, or it waits for
//     itself until its deadline.
//
// # Errors
//
// A callback's error is returned to River, which retries the job with
// backoff. An error for which errors.Is(err, [tlwebhook.ErrPermanent]) holds,
// such as [tlwebhook.Permanent](err) or a payload that no longer decodes,
// cancels the job ([river.JobCancel]). A panic in a callback is recovered by
// Process into an error, and retried. In every case the transaction is
// rolled back, so a callback's writes through [TxFromContext] are committed
// only when it succeeds.
//
// When the worker gives up on a delivery (the last attempt failed, or the
// error was permanent), it tells the Handler's [tlwebhook.Observer] once,
// with the outcome [tlwebhook.DeliveryDiscarded]; the otel module counts it.
// A job that an operator cancels, or that River's rescuer discards after its
// process died during the last attempt, is not reported.
//
// # Operating
//
// Each job's [Args] hold the message id, event type and event id in clear
// text and the payload as JSON beside its exact bytes, so that River UI
// (riverqueue.com/riverui) shows every delivery readably, and an operator
// retries failed, cancelled and discarded ones from it. Serve River UI on a
// listener of its own behind credentials of its own: it shows every
// payload. The repository's docs/inbox.md is the operator's guide, and
// examples/inbox serves River UI with -ui.
//
// Deliveries that arrive together are inserted in one transaction; when the
// database refuses it, each is inserted alone, so that a row it refuses
// costs only its own delivery a 503. Whatever a signed delivery's strings
// hold, its row is storable (see [Args]).
package riverinbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
	"github.com/tlwebhook/tlwebhook"
)

// Kind is the River job kind of an inbox delivery, as in river_job.kind.
const Kind = "tlwebhook_delivery"

// MinRetention is the shortest CompletedJobRetentionPeriod and
// CancelledJobRetentionPeriod that covers Svix's retry schedule (about 28
// hours from a message's first attempt) with a margin; see the package
// documentation's section on uniqueness.
const MinRetention = 48 * time.Hour

// Margins of [Timeouts].
const (
	// jobMargin is the time a worker has, after the callback's deadline,
	// to roll its transaction back (or commit) and return.
	jobMargin = 5 * time.Second
	// rescueMargin is the time River has, after a job's timeout, to record
	// the attempt's result before its rescuer may take the job for stuck.
	rescueMargin = 10 * time.Second
)

// Timeouts returns the River client settings JobTimeout and
// RescueStuckJobsAfter for workers of a Handler whose callback timeout
// ([tlwebhook.WithCallbackTimeout]) is callbackTimeout, the Handler's
// default being [tlwebhook.DefaultCallbackTimeout]:
//
//	jobTimeout, rescueAfter := riverinbox.Timeouts(tlwebhook.DefaultCallbackTimeout)
//	cfg := &river.Config{JobTimeout: jobTimeout, RescueStuckJobsAfter: rescueAfter, ...}
//
// The job's timeout is the callback's and 5 s for the worker to roll back
// or commit; a job still running 10 s after that is stuck: its process died.
// River then retries it at its rescuer's next run (every 30 s, on the
// client elected leader; when the dead process was the leader, another
// client takes over within about 20 s), so a delivery whose worker was
// killed mid-callback runs again within RescueStuckJobsAfter + 50 s of the
// attempt's start (75 s with the default callback timeout), instead of
// River's default hour. With callbackTimeout 0 (no bound), it
// returns 0, 0: River's defaults, a minute and an hour.
func Timeouts(callbackTimeout time.Duration) (jobTimeout, rescueStuckJobsAfter time.Duration) {
	if callbackTimeout <= 0 {
		return 0, 0
	}
	jobTimeout = callbackTimeout + jobMargin
	return jobTimeout, jobTimeout + rescueMargin
}

// Args are the arguments of an inbox job: one verified delivery. River
// stores them as JSON, which River UI shows: the delivery's message id, its
// event type and event id in clear text, and the payload as JSON to read
// ([Args.PayloadJSON]), beside the exact verified bytes ([Args.Payload]),
// which are what the worker gives [tlwebhook.Handler.Process].
//
// Every string is stored so that any database can hold it: one that holds
// U+0000 (which PostgreSQL's jsonb refuses) or bytes that are not UTF-8, or
// that begins with "%!", is stored as "%!" followed by the string with "%",
// U+0000 and each such byte percent-encoded; [Args.Delivery] decodes it.
// Identifiers that Svix and Tensorlake send never need it.
type Args struct {
	// EventType is the event's type, for reading; the worker decodes the
	// type from Payload. The JSON names are chosen so that the event type
	// and the ids lead River UI's one-line view of a job, whichever order
	// the database keeps them in (SQLite: as written, alphabetical here;
	// PostgreSQL's jsonb: shortest first).
	EventType string `json:"event,omitempty"`
	// EventID is the payload's event_id, when it has one.
	EventID string `json:"event_id,omitempty"`
	// ID is the delivery's message id (svix-id), see [tlwebhook.Delivery].
	ID string `json:"id"`
	// Key is the delivery's [tlwebhook.Delivery.IdempotencyKey]; the job is
	// unique by Key alone.
	Key string `json:"key" river:"unique"`
	// PayloadJSON is a copy of the payload for reading, as a JSON value:
	// strings that hold U+0000 have it replaced with U+FFFD and numbers
	// beyond what a database's JSON type holds are written as strings. It
	// is left out when the database refuses it anyway. Nothing reads it.
	PayloadJSON json.RawMessage `json:"payload,omitempty"`
	// Payload is the raw verified request body, kept byte for byte (base64
	// in the JSON): the worker decodes exactly the body whose signature was
	// verified.
	Payload []byte `json:"raw_payload"`
	// Timestamp is the delivery's signing time (svix-timestamp).
	Timestamp time.Time `json:"timestamp"`
}

// Kind returns [Kind]; it implements [river.JobArgs].
func (Args) Kind() string { return Kind }

// InsertOpts returns the insert options every inbox job needs: uniqueness by
// Key in every job state. It implements [river.JobArgsWithInsertOpts], so
// that jobs inserted with Args by other code are deduplicated the same way.
func (Args) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: uniqueOpts()}
}

// Delivery returns the delivery the job carries, its strings decoded (see
// [Args]).
func (a Args) Delivery() tlwebhook.Delivery {
	return tlwebhook.Delivery{ID: original(a.ID), Timestamp: a.Timestamp, EventID: original(a.EventID)}
}

// verifiedPayload returns the exact verified bytes. Jobs recorded by
// earlier versions of this package kept them, base64, under "payload".
func (a Args) verifiedPayload() []byte {
	if a.Payload == nil && len(a.PayloadJSON) > 0 && a.PayloadJSON[0] == '"' {
		var b []byte
		if json.Unmarshal(a.PayloadJSON, &b) == nil {
			return b
		}
	}
	return a.Payload
}

// uniqueOpts makes a job unique by its Key in every state, completed,
// cancelled and discarded included.
func uniqueOpts() river.UniqueOpts {
	return river.UniqueOpts{ByArgs: true, ByState: rivertype.JobStates()}
}

// An Inbox records verified deliveries as River jobs. It implements
// [tlwebhook.Inbox]; create one with [New] and install it with
// [tlwebhook.WithInbox]. It is safe for concurrent use.
//
// Deliveries that arrive while earlier ones are being inserted are inserted
// together, in one transaction of up to [DefaultMaxBatch] jobs (see
// [WithMaxBatch]): under load a commit is shared by many deliveries instead
// of costing each its own, and a lone delivery is inserted at once, without
// waiting for company. Each [Inbox.Enqueue] still returns only after the
// transaction holding its delivery has committed.
type Inbox[TTx any] struct {
	client   *river.Client[TTx]
	opts     river.InsertOpts
	maxBatch int

	mu       sync.Mutex
	pending  []*enqueueCall
	flushing int // insert transactions in flight, at most maxFlushes
}

// DefaultMaxBatch is the default largest number of deliveries an [Inbox]
// inserts in one transaction.
const DefaultMaxBatch = 128

// maxFlushes is how many insert transactions an Inbox runs at once; each
// holds one database connection.
const maxFlushes = 2

// flushTimeout bounds one insert transaction. It does not depend on any one
// request's context: a sender that hangs up must not fail the deliveries of
// others that share its transaction.
const flushTimeout = 30 * time.Second

// enqueueCall is one Enqueue waiting for its transaction.
type enqueueCall struct {
	args Args
	done chan error // buffered: the flusher never blocks on it
}

var _ tlwebhook.Inbox = (*Inbox[any])(nil)

// An Option configures an [Inbox].
type Option func(*Inbox[struct{}])

// WithQueue inserts the inbox's jobs into queue instead of River's default
// queue. A working client must have the queue in its Queues.
func WithQueue(queue string) Option {
	return func(ib *Inbox[struct{}]) { ib.opts.Queue = queue }
}

// WithMaxAttempts sets how many times River tries each delivery's job before
// discarding it, instead of the client's MaxAttempts (River's default is 25).
func WithMaxAttempts(n int) Option {
	return func(ib *Inbox[struct{}]) { ib.opts.MaxAttempts = n }
}

// WithMaxBatch sets the largest number of deliveries inserted in one
// transaction (default [DefaultMaxBatch]). With n = 1, each delivery is
// inserted on its own, in its request's goroutine and context.
func WithMaxBatch(n int) Option {
	return func(ib *Inbox[struct{}]) { ib.maxBatch = max(1, n) }
}

// New returns an [Inbox] that inserts jobs with client, which may be an
// insert-only client (no Workers, no Queues, never started). The client's
// driver decides the database: riverpgxv5 for PostgreSQL, riversqlite for
// SQLite. New panics if client is nil.
func New[TTx any](client *river.Client[TTx], opts ...Option) *Inbox[TTx] {
	if client == nil {
		panic("riverinbox.New: nil River client")
	}
	var o Inbox[struct{}]
	o.maxBatch = DefaultMaxBatch
	for _, opt := range opts {
		opt(&o)
	}
	ib := &Inbox[TTx]{client: client, opts: o.opts, maxBatch: o.maxBatch}
	ib.opts.UniqueOpts = uniqueOpts()
	return ib
}

// Enqueue records the delivery d with its raw payload as a job, and returns
// nil once the transaction that inserted it has committed. A delivery whose
// idempotency key is already recorded, in any job state, records nothing and
// returns nil. The error of a failed insert wraps the database's; the
// Handler answers it with 503. When ctx ends first, Enqueue returns its
// error; the delivery may be recorded all the same, and Svix's retry of it is
// then a duplicate. Enqueue does not keep payload after it returns.
func (ib *Inbox[TTx]) Enqueue(ctx context.Context, d tlwebhook.Delivery, payload []byte) error {
	if ib.maxBatch <= 1 {
		return ib.insertOne(ctx, argsOf(d, payload))
	}
	// The flusher may read the payload after Enqueue has returned (when ctx
	// ends first), and the Handler reuses its buffers: the call owns a copy.
	call := &enqueueCall{args: argsOf(d, bytes.Clone(payload)), done: make(chan error, 1)}
	ib.mu.Lock()
	ib.pending = append(ib.pending, call)
	if ib.flushing < maxFlushes {
		ib.flushing++
		go ib.flushLoop()
	}
	ib.mu.Unlock()
	select {
	case err := <-call.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("riverinbox: recording delivery: %w", context.Cause(ctx))
	}
}

// insertOne inserts one delivery in a transaction of its own.
func (ib *Inbox[TTx]) insertOne(ctx context.Context, args Args) error {
	_, err := ib.client.Insert(ctx, args, &ib.opts)
	return ib.withoutReadable(ctx, args, err)
}

// withoutReadable follows an insert of args alone that returned err: when
// the database refused the row, it tries once more without the readable
// copy of the payload, which is not the delivery's own bytes and must never
// cost it its place in the inbox.
func (ib *Inbox[TTx]) withoutReadable(ctx context.Context, args Args, err error) error {
	if err == nil {
		return nil
	}
	if args.PayloadJSON != nil && ctx.Err() == nil {
		args.PayloadJSON = nil
		if _, err2 := ib.client.Insert(ctx, args, &ib.opts); err2 == nil {
			return nil
		}
	}
	return fmt.Errorf("riverinbox: recording delivery: %w", err)
}

// flushLoop inserts pending calls, a batch at a time, until none is left.
func (ib *Inbox[TTx]) flushLoop() {
	for {
		ib.mu.Lock()
		n := min(len(ib.pending), ib.maxBatch)
		if n == 0 {
			ib.flushing--
			ib.mu.Unlock()
			return
		}
		batch := make([]*enqueueCall, n)
		copy(batch, ib.pending)
		ib.pending = append(ib.pending[:0], ib.pending[n:]...)
		ib.mu.Unlock()
		ib.flush(batch)
	}
}

// flush inserts one batch in one transaction and tells every call the
// result. Copies of one key in a batch are inserted once: one statement
// cannot insert a unique key twice. When the transaction fails, each
// delivery is inserted on its own, so that a row the database refuses costs
// only its own delivery (and its copies) a 503, not its batch-mates.
func (ib *Inbox[TTx]) flush(batch []*enqueueCall) {
	params := make([]river.InsertManyParams, 0, len(batch))
	first := make(map[string]int, len(batch)) // key -> index in params
	for _, c := range batch {
		if _, dup := first[c.args.Key]; dup {
			continue
		}
		first[c.args.Key] = len(params)
		params = append(params, river.InsertManyParams{Args: c.args, InsertOpts: &ib.opts})
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	_, err := ib.client.InsertMany(ctx, params)
	if err == nil {
		for _, c := range batch {
			c.done <- nil
		}
		return
	}
	errs := make([]error, len(params))
	for i, p := range params {
		args := p.Args.(Args)
		switch {
		case len(params) == 1: // it was alone already
			errs[i] = ib.withoutReadable(ctx, args, err)
		case ctx.Err() != nil:
			errs[i] = fmt.Errorf("riverinbox: recording delivery: %w", err)
		default:
			errs[i] = ib.insertOne(ctx, args)
		}
	}
	for _, c := range batch {
		c.done <- errs[first[c.args.Key]]
	}
}

// EnqueueTx is like [Inbox.Enqueue] inside the caller's transaction tx: the
// job exists, and blocks duplicates, once tx commits. Unlike Enqueue, it
// cannot try again without the readable copy of the payload if the
// database refuses the row: the caller's transaction is then aborted.
func (ib *Inbox[TTx]) EnqueueTx(ctx context.Context, tx TTx, d tlwebhook.Delivery, payload []byte) error {
	_, err := ib.client.InsertTx(ctx, tx, argsOf(d, payload), &ib.opts)
	if err != nil {
		return fmt.Errorf("riverinbox: recording delivery: %w", err)
	}
	return nil
}

// argsOf makes the job arguments of a delivery, with the readable copies.
func argsOf(d tlwebhook.Delivery, payload []byte) Args {
	var typ string
	if ev, err := tlwebhook.ParseEvent(payload); err == nil {
		typ = string(ev.Type())
	}
	return Args{
		ID:          storable(d.ID),
		Key:         storable(d.IdempotencyKey()),
		EventType:   storable(typ),
		EventID:     storable(d.EventID),
		Timestamp:   d.Timestamp,
		PayloadJSON: readable(payload),
		Payload:     payload,
	}
}

// NewWorker returns the River worker of inbox jobs, which runs h's callbacks.
// Add it to the Workers of a client whose driver's transaction type is TTx
// (pgx.Tx for riverpgxv5, *sql.Tx for riversqlite):
//
//	river.AddWorker(workers, riverinbox.NewWorker[pgx.Tx](h))
//
// For each job, the worker begins a transaction on the client's database,
// calls [tlwebhook.Handler.Process] with a context that carries it
// ([TxFromContext]), and on success completes the job in that same
// transaction ([river.JobCompleteTx]) and commits. On failure it rolls back
// and returns the error, so River retries the job; an error that wraps
// [tlwebhook.ErrPermanent] cancels it instead. When the job ends without
// another attempt (cancelled, or discarded after its last attempt), the
// worker reports [tlwebhook.DeliveryDiscarded] through
// [tlwebhook.Handler.Report]. NewWorker panics if h is nil.
func NewWorker[TTx any](h *tlwebhook.Handler) river.Worker[Args] {
	if h == nil {
		panic("riverinbox.NewWorker: nil Handler")
	}
	return &worker[TTx]{h: h}
}

type worker[TTx any] struct {
	river.WorkerDefaults[Args]
	h *tlwebhook.Handler
}

// errNotCompleted is returned when the job could not be completed in the
// worker's transaction because it is no longer running (for example River
// rescued it as stuck and another attempt owns it): the transaction is
// rolled back so that the callback's writes are not committed twice.
var errNotCompleted = errors.New("riverinbox: job no longer running, callback's writes rolled back")

// rollbackTimeout bounds the rollback after a failed or cancelled attempt.
const rollbackTimeout = 5 * time.Second

func (w *worker[TTx]) Work(ctx context.Context, job *river.Job[Args]) (err error) {
	defer func() {
		if err != nil && givesUp(ctx, job, err) {
			w.h.Report(context.WithoutCancel(ctx), tlwebhook.Observation{
				Delivery:  job.Args.Delivery(),
				EventType: tlwebhook.EventType(original(job.Args.EventType)),
				Outcome:   tlwebhook.DeliveryDiscarded,
				Err:       err,
			})
		}
	}()
	client, err := river.ClientFromContextSafely[TTx](ctx)
	if err != nil {
		return fmt.Errorf("riverinbox: %w (is the worker's type parameter the client's transaction type?)", err)
	}
	// River's public API has no generic way to begin a transaction of the
	// client's database; its driver has, and JobCompleteTx uses the same
	// driver to complete the job in the transaction.
	driver := client.Driver()
	execTx, err := driver.GetExecutor().Begin(ctx)
	if err != nil {
		return fmt.Errorf("riverinbox: beginning transaction: %w", err)
	}
	done := false
	defer func() {
		if !done {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
			_ = execTx.Rollback(rctx)
			cancel()
		}
	}()
	tx := driver.UnwrapTx(execTx)

	if err := w.h.Process(context.WithValue(ctx, txKey{}, txValue[TTx]{tx}), job.Args.Delivery(), job.Args.verifiedPayload()); err != nil {
		if errors.Is(err, tlwebhook.ErrPermanent) {
			return river.JobCancel(err)
		}
		return err
	}

	completed, err := river.JobCompleteTx[riverdriver.Driver[TTx]](ctx, tx, job)
	if err != nil {
		return fmt.Errorf("riverinbox: completing job: %w", err)
	}
	// River returns the job's row even when it did not update it, because
	// the job was not running any more: then the completion did not happen,
	// and neither must the callback's writes.
	if completed.State != rivertype.JobStateCompleted {
		return errNotCompleted
	}
	if err := execTx.Commit(ctx); err != nil {
		return fmt.Errorf("riverinbox: committing: %w", err)
	}
	done = true
	return nil
}

// givesUp reports whether River ends the job, without another attempt,
// when Work returns err: cancelled for a permanent error, discarded after
// the last attempt. A job that the client's shutdown or an operator (River
// UI's Cancel) interrupted is not given up by the inbox, nor is one that
// another attempt owns now.
func givesUp(ctx context.Context, job *river.Job[Args], err error) bool {
	var cancel *rivertype.JobCancelError
	switch {
	case errors.As(err, &cancel):
		return true
	case errors.Is(err, errNotCompleted):
		return false
	case ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		return false
	}
	return job.Attempt >= job.MaxAttempts
}

type txKey struct{}

// txValue wraps the transaction so that TxFromContext's type assertion is
// on the exact type the worker stored.
type txValue[TTx any] struct{ tx TTx }

// TxFromContext returns the transaction in which the worker of [NewWorker]
// completes the job whose callback is running with ctx; writes made in it
// are committed together with the job's completion, or not at all. TTx is
// the client driver's transaction type (pgx.Tx, *sql.Tx). It returns false
// outside such a callback, for example when the Handler runs the callback
// itself in ServeHTTP, or when TTx is not the worker's type.
//
// The transaction belongs to the worker: do not commit or roll it back.
func TxFromContext[TTx any](ctx context.Context) (TTx, bool) {
	v, ok := ctx.Value(txKey{}).(txValue[TTx])
	return v.tx, ok
}
