#!/usr/bin/env bash
# Start (or reuse) a Minikube cluster that fits the mlops chart, enable metrics-server for the
# predictor's HorizontalPodAutoscaler, and build the three service images, the MLflow server image
# and the ledger's PostgreSQL image straight into Minikube's container runtime, so the chart's
# defaults (mlops-<svc>:<appVersion from charts/mlops/Chart.yaml>, IfNotPresent) need no registry.
#
#   bash k8s/minikube-up.sh            # or: make minikube-up
#   MINIKUBE_CPUS=6 MINIKUBE_MEMORY=12g MINIKUBE_CNI=calico bash k8s/minikube-up.sh
#
# Then: helm install mlops charts/mlops -n mlops --create-namespace -f k8s/values-laptop.yaml --timeout 15m
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROFILE="${MINIKUBE_PROFILE:-minikube}"
CPUS="${MINIKUBE_CPUS:-4}"
MEMORY="${MINIKUBE_MEMORY:-8g}"
DISK="${MINIKUBE_DISK:-30g}"
# Empty: Minikube's default CNI, which ignores NetworkPolicies; "calico" enforces the chart's (on by default).
CNI="${MINIKUBE_CNI:-}"
# The chart's appVersion: the tag its image values default to.
IMAGE_TAG="${IMAGE_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/mlops/Chart.yaml)}"
SERVICES=(trainer predictor drift-monitor)

need() { command -v "$1" >/dev/null || { echo "error: $1 not found on PATH ($2)" >&2; exit 1; }; }
need minikube "https://minikube.sigs.k8s.io/docs/start/"
need kubectl "or run: make tools, and add .tools/bin to PATH"

if minikube -p "$PROFILE" status --format '{{.Host}}' 2>/dev/null | grep -q Running; then
  echo "minikube profile $PROFILE is already running; reusing it (its CPU, memory and CNI stay as they were)"
else
  args=(start -p "$PROFILE" --cpus="$CPUS" --memory="$MEMORY" --disk-size="$DISK")
  [[ -n "$CNI" ]] && args+=(--cni="$CNI")
  echo "+ minikube ${args[*]}"
  minikube "${args[@]}"
fi

# The HPA reads CPU usage from the metrics API.
minikube -p "$PROFILE" addons enable metrics-server

# `minikube image build` builds inside the node (any driver, no local Docker daemon needed);
# the images land where the kubelet looks, tagged as the chart's defaults.
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
build() {  # image name, context
  echo "+ building $1:$IMAGE_TAG from $2"
  minikube -p "$PROFILE" image build -t "$1:$IMAGE_TAG" \
    --build-opt="build-arg=VERSION=$IMAGE_TAG" --build-opt="build-arg=REVISION=$revision" "$2"
}
for svc in "${SERVICES[@]}"; do build "mlops-$svc" "services/$svc"; done
build mlops-mlflow k8s/mlflow  # the MLflow server the chart runs by default
build mlops-postgres k8s/postgres  # the predictions ledger's PostgreSQL (ledger.database.internal)

minikube -p "$PROFILE" image ls | grep -cE "mlops-(trainer|predictor|drift-monitor|mlflow|postgres):$IMAGE_TAG" | grep -qx 5 || {
  echo "error: the images are not in Minikube" >&2; exit 1; }

cat <<NEXT

Minikube is ready (profile $PROFILE, context $(kubectl config current-context)). Next:

  helm install mlops charts/mlops -n mlops --create-namespace -f k8s/values-laptop.yaml --timeout 15m
  kubectl -n mlops rollout status deployment/mlops-predictor --timeout=5m
  kubectl -n mlops port-forward service/mlops-predictor 8080:8080
  helm test mlops -n mlops
NEXT
