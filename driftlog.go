package tlwebhook

import (
	"context"
	"log/slog"
	"sync"
)

// maxRememberedDrift bounds the distinct drifts a Handler remembers (and
// logs): Tensorlake changing its payloads is news once per place, and a
// payload that sends a new member name each time must not grow memory.
const maxRememberedDrift = 1000

// driftLog logs the drift of a Handler's deliveries once per (event type,
// pointer, kind): at warn level when additive, at error level when
// breaking. It remembers at most maxRememberedDrift of them, then logs
// once that further ones are not logged. The pointers it remembers are
// reused by the parser, so that drift already reported builds no string.
type driftLog struct {
	mu         sync.RWMutex
	seen       map[string]string // driftKey -> pointer
	suppressed bool
}

// pointer returns the remembered pointer of a drift key.
func (l *driftLog) pointer(key []byte) (string, bool) {
	l.mu.RLock()
	s, ok := l.seen[string(key)]
	l.mu.RUnlock()
	return s, ok
}

// first reports whether dr is new to the log and should be logged, and
// whether the bound was reached just now.
func (l *driftLog) first(key []byte, pointer string) (log, suppressNow bool) {
	if _, seen := l.pointer(key); seen {
		return false, false // the common case, under the read lock only
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, seen := l.seen[string(key)]; seen {
		return false, false
	}
	if len(l.seen) >= maxRememberedDrift {
		suppressNow = !l.suppressed
		l.suppressed = true
		return false, suppressNow
	}
	if l.seen == nil {
		l.seen = make(map[string]string)
	}
	l.seen[string(key)] = pointer
	return true, false
}

// report logs the drift of one verified delivery that was not logged
// before.
func (l *driftLog) report(ctx context.Context, logger *slog.Logger, d Delivery, drift []Drift) {
	var buf [128]byte
	for _, dr := range drift {
		log, suppressNow := l.first(driftKey(buf[:0], dr.EventType, dr.Kind, dr.Pointer), dr.Pointer)
		if suppressNow {
			logger.LogAttrs(ctx, slog.LevelWarn, "tlwebhook: schema drift: further new drift is not logged (the Observer still sees every delivery's drift)",
				slog.Int("remembered", maxRememberedDrift))
		}
		if !log {
			continue
		}
		level, msg := slog.LevelWarn, "tlwebhook: schema drift: the payload has something this version of tlwebhook does not model; the event was decoded"
		if dr.Breaking() {
			level, msg = slog.LevelError, "tlwebhook: breaking schema drift: the event does not fit its struct; it goes to OnUnknown or OnAny, not its typed callback"
		}
		if !logger.Enabled(ctx, level) {
			continue
		}
		attrs := make([]slog.Attr, 0, 6)
		attrs = append(attrs, slog.String("event_type", truncate(string(dr.EventType), 128)),
			slog.String("pointer", dr.Pointer), slog.String("kind", string(dr.Kind)))
		if dr.Kind == DriftNewValue {
			attrs = append(attrs, slog.String("value", dr.Value))
		}
		attrs = append(attrs, slog.String("delivery_id", truncate(d.ID, 128)))
		if d.EventID != "" {
			attrs = append(attrs, slog.String("event_id", truncate(d.EventID, 128)))
		}
		logger.LogAttrs(ctx, level, msg, attrs...)
	}
}
