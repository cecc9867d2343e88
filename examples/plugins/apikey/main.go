// Command apikey is a taskerd authenticator plugin for API keys. It reads
// the keys from a file that holds only their SHA-256 hashes, each mapped to
// a subject, roles and optional namespaces, and accepts a key from
// X-API-Key or Authorization: Bearer. See README.md.
//
// Run by hand as `apikey new`, it prints a fresh key and the line to put
// in the keys file.
package main

import (
	"fmt"
	"os"

	"github.com/taskerd/taskerd/plugin"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "new" {
		key, hash, err := NewKey()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("key (shown once; give it to the client): %s\n", key)
		fmt.Printf("keys file entry: {\"sha256\": %q, \"subject\": \"SUBJECT\", \"roles\": [\"viewer\"]}\n", hash)
		return
	}
	a := &Authenticator{}
	plugin.ServeAuthenticator(a, plugin.WithConfigure(a.Configure))
}
