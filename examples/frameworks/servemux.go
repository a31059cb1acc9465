package frameworks

import "net/http"

// ServeMux returns an [http.ServeMux] that serves h on POST [Path], for
// comparison with the routers below. The pattern has no trailing slash: with
// one, ServeMux answers a POST to [Path] with a 307 redirect to Path + "/",
// which Svix counts as a failed delivery.
func ServeMux(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+Path, h)
	return mux
}
