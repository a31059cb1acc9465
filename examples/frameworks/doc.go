// Package frameworks mounts a [tlwebhook.Handler] in routers other than
// [http.ServeMux]: chi ([Chi]), gin ([Gin]), echo ([Echo]) and gorilla/mux
// ([GorillaMux]). Each function takes the handler as a plain [http.Handler]
// and serves it on POST [Path]; copy the two or three lines you need.
//
// The handler reads the raw request body itself, because the signature
// covers the exact bytes Tensorlake sent. Mount it where no middleware
// reads, re-encodes or decompresses the body first (see the tests for
// what goes wrong otherwise), and register exactly the URL configured in
// Tensorlake: a redirect or a 404 is a failed delivery.
//
// This is a separate module so that the routers stay out of the
// dependencies of github.com/tlwebhook/tlwebhook.
package frameworks

// Path is the URL path the examples serve the webhook handler on.
const Path = "/webhooks/tensorlake"
