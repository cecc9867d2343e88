package graphql

import "net/http"

// Resolver resolves every field by the REST route it stands for, called
// in process (see call).
type Resolver struct {
	api http.Handler
}
