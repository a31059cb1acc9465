package frameworks

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Echo returns an echo instance that serves h on POST [Path], adapted with
// [echo.WrapHandler].
func Echo(h http.Handler) http.Handler {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.POST(Path, echo.WrapHandler(h))
	return e
}
