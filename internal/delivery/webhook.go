package delivery

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/taskerd/taskerd/backends"
)

// The headers of a webhook POST.
const (
	// SignatureHeader is "t=UNIX_SECONDS,v1=HEX": v1 is the hex
	// HMAC-SHA256, keyed with the webhook's secret, of the decimal seconds,
	// a '.', and the body as sent.
	SignatureHeader = "Taskerd-Signature"
	SeqHeader       = "Taskerd-Event-Seq"
	TypeHeader      = "Taskerd-Event-Type"
	WebhookHeader   = "Taskerd-Webhook"
)

// DefaultTimeout bounds one webhook POST.
const DefaultTimeout = 10 * time.Second

// Sign returns the v1 signature of body sent at unix time t.
func Sign(secret []byte, t int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(t, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// ReadSecret reads a webhook's secret file: its content less surrounding
// white space, which must not be empty.
func ReadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// Webhook POSTs each event, one a request, to a URL.
type Webhook struct {
	name   string
	url    string
	client *http.Client
	secret atomic.Pointer[[]byte]
}

// NewWebhook returns the sink of webhook name, posting to rawURL (http or
// https) signed with secret, each request within timeout
// (DefaultTimeout when 0). Redirects are not followed: a 3xx is a failure.
func NewWebhook(name, rawURL string, secret []byte, timeout time.Duration) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook %q: the url must be http:// or https:// with a host", name)
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("webhook %q: empty secret", name)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	w := &Webhook{name: name, url: rawURL, client: &http.Client{
		Timeout: timeout,
		// A redirect could send the signed event to a host the operator
		// never named.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	w.SetSecret(secret)
	return w, nil
}

// SetSecret replaces the secret (serve re-reads secret files on SIGHUP).
func (w *Webhook) SetSecret(secret []byte) {
	s := bytes.Clone(secret)
	w.secret.Store(&s)
}

// Deliver POSTs body. A 2xx answer is a delivery; anything else, or no
// answer within the timeout, is a failed attempt. The error never holds
// the URL (it may carry a token) nor the secret.
func (w *Webhook) Deliver(ctx context.Context, ev *backends.Event, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("building the request failed")
	}
	t := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "taskerd")
	req.Header.Set(SignatureHeader, "t="+strconv.FormatInt(t, 10)+",v1="+Sign(*w.secret.Load(), t, body))
	req.Header.Set(SeqHeader, strconv.FormatInt(ev.Seq, 10))
	req.Header.Set(TypeHeader, string(ev.Type))
	req.Header.Set(WebhookHeader, w.name)
	res, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST failed: %w", err)
	}
	defer res.Body.Close()
	// Read a little of the answer: enough to say why in a dead letter, and
	// so that the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(res.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("HTTP %d", res.StatusCode)
	if s := oneLine(string(snippet)); s != "" {
		msg += ": " + s
	}
	return errors.New(msg)
}

// oneLine keeps printable text on one line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
