package frameworks

import (
	"net/http"

	"github.com/gorilla/mux"
)

// GorillaMux returns a gorilla/mux router that serves h on POST [Path].
func GorillaMux(h http.Handler) http.Handler {
	r := mux.NewRouter()
	r.Handle(Path, h).Methods(http.MethodPost)
	return r
}
