// Command cniplugin is a chained CNI plugin for tests: placed after real
// plugins it passes their result through, optionally after a delay
// ("sleep": "2s") or failing ADD ("failAdd": true), to test slow and
// failing networks with real IPAM and bridges in front of it.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

type conf struct {
	CNIVersion string          `json:"cniVersion"`
	Sleep      string          `json:"sleep"`
	FailAdd    bool            `json:"failAdd"`
	PrevResult json.RawMessage `json:"prevResult"`
}

func main() {
	b, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("read config: %v", err)
	}
	var c conf
	if err := json.Unmarshal(b, &c); err != nil {
		fail("parse config: %v", err)
	}
	switch os.Getenv("CNI_COMMAND") {
	case "ADD":
		if d, err := time.ParseDuration(c.Sleep); err == nil {
			time.Sleep(d)
		}
		if c.FailAdd {
			fail("injected ADD failure")
		}
		if len(c.PrevResult) == 0 {
			c.PrevResult = []byte(`{"cniVersion":"` + c.CNIVersion + `"}`)
		}
		os.Stdout.Write(c.PrevResult)
	case "VERSION":
		fmt.Print(`{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}`)
	}
}

func fail(format string, args ...any) {
	fmt.Printf(`{"cniVersion":"1.0.0","code":999,"msg":%q}`, fmt.Sprintf(format, args...))
	os.Exit(1)
}
