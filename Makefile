# Tether's build. `make help` lists the targets.
#
# Tools (kube-apiserver, etcd, kubectl, controller-gen, helm, golangci-lint)
# are built from pinned Go modules by hack/tools/install.sh into a versioned
# cache outside the repository, once per machine.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

TOOLS_BIN := $(shell bash -c 'source hack/tools/versions.sh && tether_tools_bin')
CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen
GOLANGCI_LINT := $(TOOLS_BIN)/golangci-lint
ENVTEST_TOOLS := $(TOOLS_BIN)/etcd $(TOOLS_BIN)/kube-apiserver $(TOOLS_BIN)/kubectl

# Extra flags for go test, e.g. make test GOTEST_FLAGS='-run TestAPI -v'.
GOTEST_FLAGS ?=
BIN_DIR := bin

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC (manager, runtime and gateway roles) into config/ and the chart.
	$(CONTROLLER_GEN) crd:generateEmbeddedObjectMeta=true paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths="./controllers/...;./cmd/manager/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=runtime-role paths="./runtime/...;./cmd/runtime/..." output:rbac:artifacts:config=config/runtime
	$(CONTROLLER_GEN) rbac:roleName=gateway-role paths="./gateway/...;./cmd/gateway/..." output:rbac:artifacts:config=config/gateway
	cp config/crd/bases/*.yaml charts/tether/crds/
	cp config/rbac/role.yaml charts/tether/files/manager-role.yaml
	cp config/runtime/role.yaml charts/tether/files/runtime-role.yaml
	cp config/gateway/role.yaml charts/tether/files/gateway-role.yaml

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go' | grep -v '^hack/tools/')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (config in .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: test
test: unit e2e ## Run every test: unit and envtest integration tests, then the end-to-end tests on a local cluster.

.PHONY: unit
unit: $(ENVTEST_TOOLS) ## Run unit and envtest integration tests with -race.
	KUBEBUILDER_ASSETS=$(TOOLS_BIN) go test -race -count=1 $(GOTEST_FLAGS) ./...

.PHONY: tools
tools: ## Build every pinned tool into the cache (idempotent).
	hack/tools/install.sh

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(BIN_DIR)/ ./cmd/...

VERSION ?= $(shell sed -n 's/^appVersion: *"\(.*\)"/\1/p' charts/tether/Chart.yaml)
IMAGES_DIR ?= _output/images

.PHONY: images
images: ## Build the images (manager, gateway, runtime, pause) FROM scratch as tarballs into _output/images.
	go run ./hack/images --tag $(VERSION) --out $(IMAGES_DIR)

.PHONY: demo
demo: ## Bring up a local cluster with Tether installed and narrate a conversation surviving the loss of its pod.
	hack/demo/demo.sh

.PHONY: e2e
e2e: ## Run the end-to-end tests on a local cluster (brought up and torn down; KEEP_CLUSTER=1 keeps it).
	hack/e2e.sh

.PHONY: chaos
chaos: ## Run the chaos suite on a two-node local cluster (CHAOS_DURATION, CHAOS_FAULTS, CHAOS_LEASE, CHAOS_KINDS, CHAOS_SEED, CHAOS_REPORT; KEEP_CLUSTER=1 keeps it).
	hack/chaos.sh

.PHONY: bench
bench: ## Run the benchmarks and compare them with docs/bench/baseline.txt using benchstat (BENCH_SUITES, BENCH_COUNT; BENCH_SAVE=1 writes the baseline).
	hack/bench.sh

.PHONY: demo-down
demo-down: ## Tear the local cluster down (safe to run twice).
	hack/cluster/cluster.sh down

.PHONY: run
run: manifests ## Run the controller manager against the current kubeconfig's cluster.
	go run ./cmd/manager

$(TOOLS_BIN)/%:
	hack/tools/install.sh $*
