package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/spf13/cobra"
)

// starter is what `taskerd init` writes. Files ending in .tmpl are Go
// sources and go.mod (which may not be embedded under their own names: a
// go.mod would make the directory another module) and are written without
// the suffix, filled in from initData.
//
//go:embed starter
var starter embed.FS

type initData struct {
	// Replace is go.mod's replace line for the SDK module.
	Replace string
}

func newInitCmd() *cobra.Command {
	var (
		force   bool
		sdkPath string
	)
	cmd := &cobra.Command{
		Use:   "init [DIR] [--force] [--sdk-path TASKERD_SOURCE_DIR]",
		Short: "Write a starter: taskerd.hcl, a workflow, and a Go plugin skeleton",
		Long: `Write a starter project into DIR (default the current directory, created if
missing):

  taskerd.hcl               every daemon setting, commented out, with what it does
  workflows/hello.hcl       a small workflow of built-in handlers
  plugins/hello/            a Go step-handler plugin (main.go, main_test.go,
                            go.mod, README.md) using taskerd's plugin SDK

taskerd serve in DIR then serves the hello workflow as is. Existing files are
not overwritten: init lists them and exits 2, unless --force.

The plugin's go.mod needs a replace line pointing at a clone of the taskerd
source while the module is not published: --sdk-path DIR writes it;
without, the line is written commented out, to edit.`,
		Example: `  taskerd init myproject
  taskerd init --sdk-path ~/src/taskerd`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("init takes at most one DIR; see 'taskerd init --help'")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			data := initData{Replace: "// replace github.com/taskerd/taskerd => /path/to/your/taskerd/clone"}
			if sdkPath != "" {
				abs, err := filepath.Abs(sdkPath)
				if err != nil {
					return usageErrorf("--sdk-path: %s", err)
				}
				if _, err := os.Stat(filepath.Join(abs, "plugin", "serve.go")); err != nil {
					return usageErrorf("--sdk-path %s: not a taskerd source tree (no plugin/serve.go)", sdkPath)
				}
				data.Replace = "replace github.com/taskerd/taskerd => " + abs
			}
			return writeStarter(cmd, dir, data, force, sdkPath != "")
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite files that exist")
	cmd.Flags().StringVar(&sdkPath, "sdk-path", "", "a clone of the taskerd source, for the plugin's go.mod replace line")
	return cmd
}

func writeStarter(cmd *cobra.Command, dir string, data initData, force, haveSDK bool) error {
	type file struct {
		rel  string
		body []byte
	}
	var files []file
	err := fs.WalkDir(starter, "starter", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := starter.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, "starter/")
		if name, ok := strings.CutSuffix(rel, ".tmpl"); ok {
			t, err := template.New(rel).Parse(string(body))
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := t.Execute(&b, data); err != nil {
				return err
			}
			rel, body = name, b.Bytes()
		}
		files = append(files, file{rel: filepath.FromSlash(rel), body: body})
		return nil
	})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if !force {
		var exist []string
		for _, f := range files {
			if _, err := os.Lstat(filepath.Join(dir, f.rel)); err == nil {
				exist = append(exist, filepath.Join(dir, f.rel))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return usageErrorf("%s", err)
			}
		}
		if len(exist) > 0 {
			return usageErrorf("not overwriting what exists (use --force to): %s", strings.Join(exist, ", "))
		}
	}
	for _, f := range files {
		path := filepath.Join(dir, f.rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return usageErrorf("%s", err)
		}
		if err := os.WriteFile(path, f.body, 0o644); err != nil {
			return usageErrorf("%s", err)
		}
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "wrote taskerd.hcl, workflows/hello.hcl and plugins/hello/ in %s\n", dir)
	fmt.Fprintln(out, "next:")
	cd := ""
	if dir != "." {
		cd = "cd " + dir + " && "
	}
	fmt.Fprintf(out, "  %staskerd serve      # serves workflows/hello.hcl on http://%s; the admin key goes to taskerd-admin.key\n", cd, defaultListen)
	fmt.Fprintln(out, "  # in another terminal, in the same directory: a key of your own (shown once), then a task")
	fmt.Fprintln(out, "  taskerd keys create --subject me --role operator --namespace default")
	fmt.Fprintln(out, `  TASKERD_TOKEN=KEY taskerd task create hello --context '{"name":"Ada"}'`)
	if haveSDK {
		fmt.Fprintln(out, "  plugins/hello/README.md: build, test and enable the plugin")
	} else {
		fmt.Fprintln(out, "  plugins/hello/README.md: build, test and enable the plugin (first set the replace line in plugins/hello/go.mod to your taskerd clone)")
	}
	return nil
}
