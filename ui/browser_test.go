package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/ui"
)

// chromiumPath finds Debian's Chromium, or skips the test (fails it when
// TASKERD_TEST_REQUIRE_CHROMIUM=1, as .ci/run sets).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("TASKERD_TEST_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("chromium is not installed and TASKERD_TEST_REQUIRE_CHROMIUM=1: apt-get install -y chromium")
	}
	t.Skip("chromium is not installed: apt-get install -y chromium to run the browser tests")
	return ""
}

// headers records the response headers of each document the browser
// loads, by URL path.
type headers struct {
	mu sync.Mutex
	by map[string]network.Headers
}

func (h *headers) get(path string) network.Headers {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.by[path]
}

// TestBrowser drives Chromium through the UI: log in, create a task from
// the form and watch its DAG turn green without a reload, retry a failed
// step, and as a viewer see no buttons and be refused a forged post.
func TestBrowser(t *testing.T) {
	exe := chromiumPath(t)
	e := newEnv(t, openSQLite(t), envOptions{})
	for i := range 3 {
		e.createTask("shop/orders", fmt.Sprintf(`{"order_id":"O-%d"}`, i))
	}
	flaky := e.createTask("shop/flaky", `{}`)
	e.waitTask(flaky, backends.StateError)

	// chromedp's defaults (headless, --disable-background-networking,
	// --disable-dev-shm-usage for small containers, ...) plus what CI
	// runs as root needs.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	seen := &headers{by: map[string]network.Headers{}}
	var cspViolations []string
	var cspMu sync.Mutex
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			if ev.Type == network.ResourceTypeDocument && ev.Response != nil {
				path := strings.TrimPrefix(ev.Response.URL, e.srv.URL)
				path, _, _ = strings.Cut(path, "?")
				seen.mu.Lock()
				seen.by[path] = ev.Response.Headers
				seen.mu.Unlock()
			}
		case *network.EventLoadingFailed:
			if ev.BlockedReason != "" {
				cspMu.Lock()
				cspViolations = append(cspViolations, string(ev.BlockedReason))
				cspMu.Unlock()
			}
		}
	}))
	shots := os.Getenv("TASKERD_UPDATE_SCREENSHOTS") == "1"
	screenshot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			if !shots {
				return nil
			}
			buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join("..", "docs", "images", name), buf, 0o644)
		})
	}
	colorScheme := func(v string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}})
			return err
		})
	}
	url := func(p string) string { return e.srv.URL + p }
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	eval := func(expr string, opts ...chromedp.EvaluateOption) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr, opts...))
		require.NoError(t, err, expr)
		return v
	}
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second)))
			return err
		})
	}

	// Log in: the tasks page sends us to the form and back.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(url("/ui/tasks")),
		chromedp.WaitVisible(css(`#credential`)),
		screenshot("ui-login.png"),
		chromedp.SendKeys(css(`#credential`), adminKey),
		chromedp.Submit(css(`#credential`)),
		chromedp.WaitVisible(css(`table.tasks`)),
		chromedp.WaitVisible(css(`#counts ul.counts`)),
	))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, url("/ui/tasks"), loc)
	h := seen.get("/ui/tasks")
	require.NotNil(t, h, "the tasks page's headers were seen")
	assert.Equal(t, ui.ContentSecurityPolicy, fmt.Sprint(h["Content-Security-Policy"]))
	// The first page's rows refresh: a task created meanwhile appears
	// without a reload.
	eval(`window.__listNoReload = true`)
	fresh := e.createTask("shop/orders", `{"order_id":"fresh"}`)
	require.NoError(t, chromedp.Do(ctx, poll(fmt.Sprintf(`document.querySelector('table.tasks a[href="/ui/tasks/%d"]') !== null`, fresh))))
	assert.Equal(t, true, eval(`window.__listNoReload === true`))
	e.waitTask(fresh, backends.StateComplete)
	require.NoError(t, chromedp.Do(ctx, screenshot("ui-tasks.png")))

	// Create a task from the workflow's form; watch the DAG turn green
	// without a reload (a marker set on the page survives).
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(url("/ui/workflows/shop/orders")),
		chromedp.WaitVisible(css(`#context`)),
		screenshot("ui-workflow.png"),
	))
	// The form checks the context against the schema as it is typed.
	assert.Contains(t, eval(`document.querySelector('[data-json-hint]').textContent`), "context.order_id is required")
	assert.Contains(t, eval(`const ta = document.querySelector('#context'); ta.value = '{"order_id": 7}';
		ta.dispatchEvent(new Event('input')); document.querySelector('[data-json-hint]').textContent`), "context.order_id must be string")
	eval(`const c = document.querySelector('#context'); c.value = '{"order_id":"B-1"}'; c.dispatchEvent(new Event('input'))`)
	assert.Equal(t, "", eval(`document.querySelector('[data-json-hint]').textContent`))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(css(`#create button[type=submit]`)),
		chromedp.WaitVisible(css(`#live svg.dag`)),
	))
	loc, err = chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	require.Regexp(t, `/ui/tasks/\d+$`, loc)
	assert.Equal(t, true, eval(`window.__noReload = true; document.querySelector('#live[data-live-src]') !== null`), "a running task's page is live")
	require.NoError(t, chromedp.Do(ctx, poll(`document.querySelectorAll('svg.dag g.node.st-complete').length === 4`)))
	assert.Equal(t, true, eval(`window.__noReload === true`), "the DAG turned green without a reload")
	assert.Equal(t, "complete", eval(`document.querySelector('#live .live-body').dataset.status`))

	// The failed step: shown red with its error, retried from its button.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(url(fmt.Sprintf("/ui/tasks/%d", flaky))),
		chromedp.WaitVisible(css(`svg.dag g.node.st-error`)),
		screenshot("ui-task-error.png"),
	))
	assert.Contains(t, eval(`document.querySelector('svg.dag g.node.st-error text.err').textContent`), "card declined")
	// Keyboard: the first Tab reaches "Skip to content", and the DAG's
	// boxes are links that take the focus.
	require.NoError(t, chromedp.Do(ctx, chromedp.KeyEvent("\t")))
	assert.Equal(t, "skip", eval(`document.activeElement.className`))
	assert.Equal(t, true, eval(`(() => { const a = document.querySelector('svg.dag g.node a'); a.focus(); return document.activeElement === a; })()`))
	if shots {
		require.NoError(t, chromedp.Do(ctx, colorScheme("dark"), screenshot("ui-task-error-dark.png"), colorScheme("light")))
	}
	// Clicking posts the form; the answer redirects to the task page.
	_, err = chromedp.Run(ctx, chromedp.WaitEvent(cdppage.LoadEventFired, func(cdppage.EventLoadEventFired) bool { return true },
		chromedp.Click(css(`form[action$="/steps/charge/retry"] button`))))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		poll(`document.querySelectorAll('svg.dag g.node.st-complete').length === 2`),
		screenshot("ui-task.png"),
	))
	e.waitTask(flaky, backends.StateComplete)

	// A phone-width look at the task list.
	if shots {
		require.NoError(t, chromedp.Do(ctx,
			chromedp.EmulateViewport(390, 844),
			chromedp.Navigate(url("/ui/tasks")),
			chromedp.WaitVisible(css(`table.tasks`)),
			screenshot("ui-tasks-phone.png"),
			chromedp.EmulateViewport(1280, 900),
		))
	}

	// A viewer: no buttons, and a forged post (with a valid CSRF token) is
	// refused by the policy; one without the token by the CSRF check.
	failed := e.createTask("shop/flaky", `{}`)
	e.waitTask(failed, backends.StateError)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(css(`form.logout button`)),
		chromedp.WaitVisible(css(`#credential`)),
		chromedp.SendKeys(css(`#credential`), viewerKey),
		chromedp.Submit(css(`#credential`)),
		chromedp.WaitVisible(css(`table.tasks`)),
		chromedp.Navigate(url(fmt.Sprintf("/ui/tasks/%d", failed))),
		chromedp.WaitVisible(css(`svg.dag g.node.st-error`)),
	))
	assert.EqualValues(t, 0, eval(`document.querySelectorAll('main form[method=post], main button').length`), "a viewer sees no operator button")
	forged := eval(fmt.Sprintf(`fetch('/ui/tasks/%d/steps/charge/retry', {method: 'POST', credentials: 'same-origin',
		body: new URLSearchParams({csrf: document.querySelector('form.logout input[name=csrf]').value})}).then(r => r.status)`, failed), chromedp.EvalAwaitPromise)
	assert.EqualValues(t, 403, forged, "the policy refuses a viewer's retry")
	noToken := eval(fmt.Sprintf(`fetch('/ui/tasks/%d/steps/charge/retry', {method: 'POST', credentials: 'same-origin',
		body: new URLSearchParams({reason: 'no token'})}).then(r => r.status)`, failed), chromedp.EvalAwaitPromise)
	assert.EqualValues(t, 403, noToken, "a post without a CSRF token is refused")
	task, err := e.store.GetTask(context.Background(), failed)
	require.NoError(t, err)
	assert.Equal(t, backends.StateError, task.State)

	cspMu.Lock()
	defer cspMu.Unlock()
	assert.Empty(t, cspViolations, "nothing the pages load is blocked by their own CSP")
}
