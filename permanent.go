package tlwebhook

// Permanent wraps err to mark it permanent: when a callback returns it, the
// [Handler] answers with the header webhook-delivery: abort-message so that
// Svix stops retrying the message, and an inbox worker gives the job up.
// errors.Is(Permanent(err), ErrPermanent) and errors.Is(Permanent(err), err)
// are both true. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() []error { return []error{ErrPermanent, e.err} }
