package tlwebhook

import (
	"context"
	"time"
)

// An Observer is told about every request a [Handler] answers and every
// [Handler.Process] call, once each, after the answer is decided; see
// [WithObserver]. Observe runs on the request's goroutine: it should be
// quick and must be safe for concurrent use.
type Observer interface {
	Observe(ctx context.Context, o Observation)
}

// An Observation describes what happened to one delivery.
type Observation struct {
	// Delivery is the delivery; ID is empty when the request was rejected
	// before its headers were read.
	Delivery Delivery
	// EventType is the decoded event's type; empty when the request was
	// rejected before decoding.
	EventType EventType
	// Outcome says what happened.
	Outcome DeliveryOutcome
	// Status is the HTTP status answered; 0 for [Handler.Process].
	Status int
	// Err is the reason for a rejection or failure: an error wrapping one
	// of the package's sentinels, or the callback's error. Nil when
	// processed.
	Err error
	// Duration is the callback's run time; zero when no callback ran.
	Duration time.Duration
	// Drift is how the verified payload departs from this version's event
	// structs (see [CheckDrift]); nil when it fits, and for requests
	// rejected before decoding. Breaking drift sends the event to
	// OnUnknown or OnAny; with neither, Err wraps [ErrSchemaDrift].
	Drift []Drift
}

// A DeliveryOutcome says what happened to a delivery.
type DeliveryOutcome string

// Delivery outcomes.
const (
	// DeliveryProcessed: verified, and its callback returned nil or it has
	// none.
	DeliveryProcessed DeliveryOutcome = "processed"
	// DeliveryDuplicate: a copy of a message that is in progress (409) or
	// was completed (204); no callback ran.
	DeliveryDuplicate DeliveryOutcome = "duplicate"
	// DeliveryRejected: refused before any callback: not allowed, not
	// verified, too large or not decodable.
	DeliveryRejected DeliveryOutcome = "rejected"
	// DeliveryFailed: the callback returned an error, panicked or overran
	// its deadline, or the deduplicator or inbox was unavailable.
	DeliveryFailed DeliveryOutcome = "failed"
	// DeliveryEnqueued: recorded in the inbox ([WithInbox]).
	DeliveryEnqueued DeliveryOutcome = "enqueued"
	// DeliveryDiscarded: the inbox gave up on a delivery it had recorded:
	// its callback failed on the last attempt, or returned an error
	// wrapping [ErrPermanent]. Reported once per delivery, by the inbox's
	// worker through [Handler.Report], beside the [DeliveryFailed] of the
	// attempt itself; the delivery stays in the inbox, to be retried by
	// hand.
	DeliveryDiscarded DeliveryOutcome = "discarded"
)

// Report tells the Handler's [Observer] ([WithObserver]), if it has one,
// about o. It is for code that processes the Handler's deliveries outside
// it and learns outcomes the Handler cannot see, such as an inbox's worker
// reporting [DeliveryDiscarded]; the Handler reports its own requests and
// [Handler.Process] calls itself.
func (h *Handler) Report(ctx context.Context, o Observation) { h.observe(ctx, o) }
