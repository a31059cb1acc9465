package tlwebhook

import "context"

// An Inbox records verified deliveries durably, for a worker to process
// later with [Handler.Process]; see [WithInbox]. The module
// github.com/tlwebhook/tlwebhook/riverinbox implements it on River.
type Inbox interface {
	// Enqueue returns nil once the delivery is durably recorded; recording a
	// delivery whose IdempotencyKey is already recorded records nothing and
	// returns nil. payload is only valid during the call: an Inbox that
	// keeps it must copy it.
	Enqueue(ctx context.Context, d Delivery, payload []byte) error
}
