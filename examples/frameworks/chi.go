package frameworks

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// Chi returns a chi router that serves h on POST [Path]. chi takes any
// [http.Handler], so the handler needs no adapter.
func Chi(h http.Handler) http.Handler {
	r := chi.NewRouter()
	r.Method(http.MethodPost, Path, h)
	return r
}
