package graphql

import "github.com/taskerd/taskerd/api"

// Resolver resolves every field by the REST route it stands for, called
// in process (see call), and nested lists by their batch form (see get).
type Resolver struct {
	api api.InProcess
}
