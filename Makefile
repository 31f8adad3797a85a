# GoChat. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

MODULE   := github.com/gochat-im/gochat
MODULES  := pkg idl gateway logic task dataproxy bench devstack
BIN      := $(CURDIR)/bin
DATA     ?= $(CURDIR)/data
# Packages of every module, found through go.work.
PKGS      = $(shell go list $(MODULE)/... | grep -v /kitex_gen/)
UNIT_PKGS = $(filter-out $(MODULE)/devstack/e2e,$(PKGS))
CMDS := gateway/cmd/gateway logic/cmd/logic task/cmd/task dataproxy/cmd/dataproxy \
        devstack/cmd/gochat-dev devstack/cmd/gochatctl \
        bench/cmd/conns bench/cmd/push bench/cmd/p2p bench/cmd/group bench/cmd/diskprobe
FUZZTIME ?= 30s

.PHONY: help build run test test-unit test-e2e fuzz vet fmt gen tidy clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-9s %s\n", $$1, $$2}'

build: ## build every binary (services, tools, bench tools) into ./bin
	@mkdir -p $(BIN)
	go build -o $(BIN)/ $(addprefix $(MODULE)/,$(CMDS))

run: build ## start GoChat with embedded etcd, Kafka, Redis and SQL store (data in ./data)
	$(BIN)/gochat-dev -data-dir $(DATA)

test: vet build test-unit test-e2e ## vet, then unit and end-to-end tests (needs MariaDB and Redis on 127.0.0.1)

test-unit: ## unit and integration tests of every module, with the race detector
	go test -race -count=1 -timeout 15m $(UNIT_PKGS)

test-e2e: build ## end-to-end tests through real processes
	GOCHAT_BIN_DIR=$(BIN) go test -count=1 -timeout 20m -v $(MODULE)/devstack/e2e

fuzz: ## run the fuzz tests (frames, handshake, downstream records, client frame decoding, push encoding, MessagePack) for FUZZTIME each
	cd gateway && go test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/wsframe
	cd gateway && go test -run '^$$' -fuzz '^FuzzHandshake$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/upgrade
	cd gateway && go test -run '^$$' -fuzz '^FuzzRecord$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/downstream
	cd gateway && go test -run '^$$' -fuzz '^FuzzFastDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/server
	cd pkg && go test -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./protocol
	cd pkg && go test -run '^$$' -fuzz '^FuzzMsgpackToJSON$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./protocol
	cd pkg && go test -run '^$$' -fuzz '^FuzzJSONToMsgpack$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./protocol

vet: ## go vet every module, check formatting and the dependency rules
	go vet $(PKGS)
	scripts/check-deps.sh
	@out=$$(gofmt -l $(MODULES)); out=$$(echo "$$out" | grep -v /kitex_gen/ || true); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt: ## format the code
	gofmt -w $(MODULES)

gen: ## regenerate the Kitex code from idl/thrift with the pinned kitex tool
	cd idl && for f in logic dataproxy events; do \
		go tool kitex -module $(MODULE)/idl -gen-path kitex_gen thrift/$$f.thrift; done

tidy: ## go mod tidy in every module
	for m in $(MODULES); do (cd $$m && go mod tidy); done

clean: ## remove binaries (not ./data)
	rm -rf $(BIN)
