// Command authtest is the host tests' authenticator plugin. Configured with
// {"name": N, "token": T}, it authenticates `Authorization: Bearer T` as
// subject N, rejects any other bearer starting with "N:", and answers
// not_mine to the rest. X-Test: crash-N makes the process exit during the
// call; X-Test: hang-N blocks until the call is cancelled.
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"os"
	"strings"

	"github.com/taskerd/taskerd/plugin"
)

type config struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

func main() {
	var cfg config
	plugin.ServeAuthenticator(plugin.AuthenticatorFunc(func(ctx context.Context, req *plugin.AuthRequest) (plugin.AuthResult, error) {
		// Logs what it does, never the header values.
		plugin.Logger().Info("authenticate called", "plugin_name", cfg.Name, "path", req.Path)
		switch req.Header.Get("X-Test") {
		case "crash-" + cfg.Name:
			os.Exit(3)
		case "hang-" + cfg.Name:
			<-ctx.Done()
			return plugin.AuthResult{}, ctx.Err()
		case "error-" + cfg.Name:
			return plugin.AuthResult{}, errors.New("backend unavailable")
		}
		tok, ok := req.BearerToken()
		if !ok {
			return plugin.NotMine(), nil
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(cfg.Token)) == 1 {
			return plugin.Authenticated(cfg.Name+"-user", []string{"viewer"}, map[string]any{"via": cfg.Name}), nil
		}
		if strings.HasPrefix(tok, cfg.Name+":") {
			return plugin.Rejected("unknown token"), nil
		}
		return plugin.NotMine(), nil
	}), plugin.WithConfigure(func(_ context.Context, raw json.RawMessage) error {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return err
		}
		if cfg.Name == "" || cfg.Token == "" {
			return errors.New("name and token are required")
		}
		return nil
	}))
}
