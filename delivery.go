package tlwebhook

import (
	"context"
	"time"
)

// A Delivery describes one verified delivery attempt.
type Delivery struct {
	// ID is the message id from the svix-id (or webhook-id) header. It is
	// the same on every retry and manual resend of one message.
	ID string
	// Timestamp is the time the attempt was signed, from the svix-timestamp
	// (or webhook-timestamp) header.
	Timestamp time.Time
	// EventID is the event_id of a lifecycle envelope, Tensorlake's
	// recommended deduplication key. [Handler] sets it after decoding; it is
	// empty for payloads that carry none and for [Verifier.Verify].
	EventID string
}

// IdempotencyKey returns the key that identifies the message this delivery
// belongs to, for deduplication: the payload's event_id when it has one,
// else the message id.
func (d Delivery) IdempotencyKey() string {
	if d.EventID != "" {
		return d.EventID
	}
	return d.ID
}

type deliveryKey struct{}

// DeliveryFromContext returns the [Delivery] that [Verifier.Middleware],
// [Handler] or [Handler.Process] stored in a context.
func DeliveryFromContext(ctx context.Context) (Delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(*Delivery)
	if !ok {
		return Delivery{}, false
	}
	return *d, true
}

// deliveryCtx carries a Delivery in one allocation (context.WithValue
// takes two: the context and the boxed Delivery).
type deliveryCtx struct {
	context.Context
	d Delivery
}

func (c *deliveryCtx) Value(key any) any {
	if _, ok := key.(deliveryKey); ok {
		return &c.d
	}
	return c.Context.Value(key)
}

func contextWithDelivery(ctx context.Context, d Delivery) context.Context {
	return &deliveryCtx{Context: ctx, d: d}
}

// withEventID returns d with the event_id of ev's lifecycle envelope, if
// it has one.
func withEventID(d Delivery, ev Event) Delivery {
	if e, ok := ev.(interface{ envelope() *Envelope }); ok {
		d.EventID = e.envelope().EventID
	}
	return d
}

func (e *Envelope) envelope() *Envelope { return e }
