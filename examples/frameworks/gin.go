package frameworks

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// Gin returns a gin engine that serves h on POST [Path], adapted with
// [gin.WrapH]. It uses [gin.New], not gin.Default, so that no middleware runs
// before the handler; set gin's mode ([gin.SetMode]) as your application
// does.
func Gin(h http.Handler) http.Handler {
	r := gin.New()
	r.POST(Path, gin.WrapH(h))
	return r
}
