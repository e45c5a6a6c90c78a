# nodecri: a CRI plugin for containerd, built into bin/containerd.
# `make help` lists the targets.

GO        ?= go
BIN       := $(CURDIR)/bin
RUN_DIR   ?= $(CURDIR)/_run
METRICS   ?= 127.0.0.1:1338
GOTESTFLAGS ?=
INTEGRATION_TIMEOUT ?= 20m

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/containerd (containerd with nodecri as its CRI plugin)
	$(GO) build -o $(BIN)/containerd ./cmd/containerd

.PHONY: deps
deps: ## Install companions into bin/ and from apt: shim, ctr, runc, crictl, crun, CNI plugins, iptables
	./hack/deps.sh

.PHONY: test
test: deps build ## Run unit tests, then integration tests against bin/containerd (needs root)
	$(GO) test -count=1 -race $(GOTESTFLAGS) $$($(GO) list ./... | grep -v /integration)
	$(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) $(GOTESTFLAGS) ./integration/...

.PHONY: run
run: deps build ## Start the daemon in the foreground on a development config under _run/
	@$(GO) run ./hack/devconfig -dir $(RUN_DIR) -bin $(BIN) -metrics $(METRICS) >/dev/null
	@echo "config:  $(RUN_DIR)/config.toml"
	@echo "crictl:  $(BIN)/crictl --runtime-endpoint unix://$(RUN_DIR)/containerd.sock info"
	@echo "ctr:     $(BIN)/ctr --address $(RUN_DIR)/containerd.sock -n k8s.io images ls"
	@echo "metrics: curl http://$(METRICS)/v1/metrics"
	PATH=$(BIN):$$PATH exec $(BIN)/containerd --config $(RUN_DIR)/config.toml

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants to rewrite:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: clean
clean: ## Remove bin/containerd and the _run/ and _output/ folders (keeps installed companions)
	rm -f $(BIN)/containerd
	rm -rf $(RUN_DIR) _output

.PHONY: critest
critest: deps build ## Run cri-tools' critest v1.36.0 offline against bin/containerd, then its streaming specs over websocket (results in _output/critest*)
	./hack/critest-tools.sh
	@rm -f _output/critest/summary.txt _output/critest-websocket/summary.txt
	@rc=0; NODECRI_CRITEST=1 $(GO) test -count=1 -timeout 30m -run TestCritest -v ./integration/critest/ || rc=$$?; \
	  if [ -z "$$NODECRI_CRITEST_ARGS$$NODECRI_CRITEST_WEBSOCKET" ]; then \
	    NODECRI_CRITEST=1 NODECRI_CRITEST_WEBSOCKET=1 $(GO) test -count=1 -timeout 30m -run TestCritest -v ./integration/critest/ || rc=$$?; \
	    printf 'websocket: '; tail -n 1 _output/critest-websocket/summary.txt 2>/dev/null; \
	  fi; \
	  if [ -n "$$NODECRI_CRITEST_WEBSOCKET" ]; then tail -n 1 _output/critest-websocket/summary.txt 2>/dev/null; \
	  else tail -n 1 _output/critest/summary.txt 2>/dev/null; fi; exit $$rc

.PHONY: bench
bench: deps build ## Benchmark bin/containerd against upstream containerd's CRI (same version) in one run
	./hack/upstream.sh
	NODECRI_BENCH=1 $(GO) test -count=1 -timeout 60m -run TestBench -v ./integration/bench/
