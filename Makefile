# edgemirror — run `make help` for the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/edgemirror/edgemirror/cli.Version=$(VERSION)
# A count, not a duration: with a duration, Go 1.26's fuzzing coordinator can
# report its own stop as "context deadline exceeded" (golang/go#75804).
FUZZTIME ?= 100000x
# staticcheck at a fixed version, fetched through the Go module proxy.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# What make release builds, as GOOS/GOARCH.
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64

.PHONY: help build test unit e2e lint fuzz demo bench release clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

build: ## build ./bin/edgemirror
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/edgemirror .

test: lint unit e2e fuzz ## every test: lint, unit, end-to-end, a short fuzz
	@echo "make test: all passed"

unit: ## unit tests of the main module, with the race detector
	$(GO) test -race -count=1 ./...

e2e: ## end-to-end tests against real registries, distribution v3 and 2.8 (nested module e2e/), with the race detector
	@command -v docker-registry >/dev/null || { echo "make e2e: distribution 2.8 (docker-registry) is missing: apt-get install docker-registry, or run .ci/run" >&2; exit 1; }
	cd e2e && $(GO) test -race -count=1 -timeout 20m ./...

lint: ## go vet, staticcheck and a gofmt check over both modules
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...
	$(STATICCHECK) ./...
	cd e2e && $(STATICCHECK) ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

fuzz: ## run each fuzz target for FUZZTIME (default 100000 inputs each)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

demo: ## mirror the demo profile between two local registries, with progress and report
	cd e2e && $(GO) run ./cmd/demo

bench: ## benchmark edgemirror against crane and oras on a ~1 GiB synthetic corpus
	cd e2e && $(GO) run ./cmd/bench

release: ## static binaries for PLATFORMS in dist/: edgemirror-VERSION-OS-ARCH.tar.gz (.zip for windows) and SHA256SUMS
	@command -v zip >/dev/null || { echo "make release: zip is missing (for the windows archives): apt-get install zip" >&2; exit 1; }
	rm -rf dist
	@set -e; for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; name=edgemirror-$(VERSION)-$$os-$$arch; exe=; \
	  if [ $$os = windows ]; then exe=.exe; fi; \
	  echo "release $$name"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o dist/$$name/edgemirror$$exe .; \
	  if [ $$p = "$$($(GO) env GOOS)/$$($(GO) env GOARCH)" ]; then \
	    dist/$$name/edgemirror$$exe version | grep -qxF "edgemirror $(VERSION)" || { echo "make release: $$name does not say version $(VERSION)" >&2; exit 1; }; \
	  fi; \
	  cp README.md dist/$$name/; \
	  if [ $$os = windows ]; then (cd dist && zip -qr $$name.zip $$name); \
	  else tar -C dist -czf dist/$$name.tar.gz $$name; fi; \
	  rm -rf dist/$$name; \
	done
	cd dist && sha256sum edgemirror-$(VERSION)-* > SHA256SUMS

clean: ## remove build output
	rm -rf bin
