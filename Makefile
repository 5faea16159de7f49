# The two commands the README promises: `make run` and `make test`.
GO ?= go

.PHONY: run test build bench deps vet unit

run:
	./deploy/run-local.sh

test: deps vet unit

deps:
	./deploy/install-deps.sh

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 40m ./...

build:
	./xcaddy.sh

bench:
	./bench/run.sh
