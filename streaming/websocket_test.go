package streaming

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/util/proxy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestStreamsCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newStreamsCache()
	c.now = func() time.Time { return now }
	want := proxy.Options{Stdin: true, Stdout: true, Tty: true}
	c.put("http://127.0.0.1:1/exec/tok1", want)
	c.put("http://127.0.0.1:1/attach/tok2", proxy.Options{Stdout: true})
	if got, ok := c.take("/exec/tok1"); !ok || got != want {
		t.Errorf("take tok1: %+v %v", got, ok)
	}
	if _, ok := c.take("/exec/tok1"); ok {
		t.Error("tok1 taken twice")
	}
	now = now.Add(tokenTTL)
	if _, ok := c.take("/attach/tok2"); ok {
		t.Error("tok2 taken after its TTL")
	}
	// Expired entries go at the next put; the cache stays bounded.
	for i := range maxStreamEntries + 10 {
		c.put(fmt.Sprintf("http://127.0.0.1:1/exec/t%d", i), proxy.Options{Stdout: true})
	}
	if len(c.byPath) != maxStreamEntries || len(c.order) != maxStreamEntries {
		t.Errorf("%d entries, %d in order; want %d", len(c.byPath), len(c.order), maxStreamEntries)
	}
	if _, ok := c.take("/exec/t0"); ok {
		t.Error("the oldest entry survived the bound")
	}
	if _, ok := c.take(fmt.Sprintf("/exec/t%d", maxStreamEntries+9)); !ok {
		t.Error("the newest entry is missing")
	}
}

// websocketGet sends a websocket upgrade offering protocol and returns the
// status: it never reaches the runtime.
func websocketGet(t *testing.T, rawURL, protocol string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", protocol)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestWebsocketUnknownToken(t *testing.T) {
	s := serve(t, Options{})
	// v5 exec and attach: refused before any upgrade.
	for _, kind := range []string{"exec", "attach"} {
		if code := websocketGet(t, s.URL()+kind+"/AAAAAAAA", "v5.channel.k8s.io"); code != http.StatusNotFound {
			t.Errorf("v5 %s with an unknown token: HTTP %d, want 404", kind, code)
		}
	}
	// Tunnelled port-forward: cri-streaming's 404 comes back through.
	if code := websocketGet(t, s.URL()+"portforward/AAAAAAAA", "SPDY/3.1+portforward.k8s.io"); code != http.StatusNotFound {
		t.Errorf("tunnelled port-forward with an unknown token: HTTP %d, want 404", code)
	}
	// A token made for exec is not one for attach.
	r, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "abc", Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	tok := r.Url[len(s.URL()+"exec/"):]
	if code := websocketGet(t, s.URL()+"attach/"+tok, "v5.channel.k8s.io"); code == http.StatusSwitchingProtocols {
		t.Error("an exec token upgraded an attach")
	}
}
