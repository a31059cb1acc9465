package tlwebhook

// fastParse decodes the common payloads without reflection. It returns
// ok=false whenever it is not certain to produce exactly what the
// encoding/json path of [ParseEvent] produces; the caller then falls back to
// that path.
func fastParse(payload []byte) (ev Event, ok bool) {
	return nil, false
}
