package frameworks_test

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"
	"github.com/labstack/echo/v4"

	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// The README's "Other routers" snippet: the Handler mounted on POST
// /webhooks/tensorlake by each router. TestRouters sends each a signed
// delivery.
func Example_readme() {
	h, err := tlwebhook.NewHandler(tlwebhooktest.NewSecret())
	if err != nil {
		panic(err)
	}
	gin.SetMode(gin.ReleaseMode)

	r := chi.NewRouter()
	r.Method(http.MethodPost, "/webhooks/tensorlake", h)

	g := gin.New()
	g.POST("/webhooks/tensorlake", gin.WrapH(h))

	e := echo.New()
	e.POST("/webhooks/tensorlake", echo.WrapHandler(h))

	m := mux.NewRouter()
	m.Handle("/webhooks/tensorlake", h).Methods(http.MethodPost)

	fmt.Println(r != nil, g != nil, e != nil, m != nil)
	// Output: true true true true
}
