package plugin

import (
	"fmt"
	"os"
)

func serve(h Handlers, o *serveOptions) {
	fmt.Fprintln(os.Stderr, "taskerd plugin: not implemented yet")
	os.Exit(1)
}
