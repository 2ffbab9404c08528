#!/usr/bin/env bash
# Submit StyleFix to the Flink session cluster of flink-deployment.yaml.
#
#   infra/flink/submit.sh portable   # PortableRunner, through the Beam job server in the cluster
#   infra/flink/submit.sh flink      # FlinkRunner: a job server started here (needs Java 11+)
#                                    # talks to Flink's REST port directly
#
# Both forward the cluster's ports to this machine with kubectl for the
# duration of the submission. Settings from the environment:
#   INPUT, OUTPUT   required: shard glob and output prefix (gs:// or s3://)
#   MODE [style]  NAMESPACE [default]  PARALLELISM [4: one per GPU TaskManager]
#   MAX_BATCH_SIZE [32]  GPU_MEMORY_SHARE [0.8: one SDK worker per GPU]
#   BUCKET          required for `flink`: the job server started here stages the
#                   job's artifacts under gs://BUCKET/beam-artifacts, where the
#                   TaskManagers can read them (a local temp folder they cannot)
#   PYTHON [.venv/bin/python where make install made it, else python]
#   DRY_RUN=1       print the commands instead of running them
set -euo pipefail

cd "$(dirname "$0")/../.."

if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi

MODE="${MODE:-style}"
NAMESPACE="${NAMESPACE:-default}"
PARALLELISM="${PARALLELISM:-4}"
MAX_BATCH_SIZE="${MAX_BATCH_SIZE:-32}"
GPU_MEMORY_SHARE="${GPU_MEMORY_SHARE:-0.8}"
FLINK_VERSION=1.20

if [[ -z "${INPUT:-}" || -z "${OUTPUT:-}" ]]; then
    echo "submit.sh: set INPUT and OUTPUT (see the top of this file)" >&2
    exit 2
fi

run() {
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# kubectl port-forward for as long as this script runs.
forward() {
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        run kubectl port-forward -n "$NAMESPACE" "$@"
        return
    fi
    kubectl port-forward -n "$NAMESPACE" "$@" >/dev/null &
    FORWARD_PID=$!
    trap 'kill "$FORWARD_PID" 2>/dev/null || true' EXIT
    sleep 3  # until the forward listens
}

job_args=(
    --input="$INPUT"
    --output="$OUTPUT"
    --mode="$MODE"
    --device=cuda
    --max_batch_size="$MAX_BATCH_SIZE"
    --gpu_memory_share="$GPU_MEMORY_SHARE"
    --parallelism="$PARALLELISM"
    --environment_type=EXTERNAL
    --environment_config=localhost:50000
)

case "${1:-}" in
    portable)
        forward svc/beam-job-server 8099:8099 8098:8098
        run "$PYTHON" -m pipelines.main \
            --runner=PortableRunner \
            --job_endpoint=localhost:8099 \
            --artifact_endpoint=localhost:8098 \
            "${job_args[@]}"
        ;;
    flink)
        if [[ -z "${BUCKET:-}" ]]; then
            echo "submit.sh flink: set BUCKET (see the top of this file)" >&2
            exit 2
        fi
        forward svc/stylefix-flink-rest 8081:8081
        run "$PYTHON" -m pipelines.main \
            --runner=FlinkRunner \
            --flink_master=localhost:8081 \
            --flink_version="$FLINK_VERSION" \
            --artifacts_dir="gs://${BUCKET}/beam-artifacts" \
            "${job_args[@]}"
        ;;
    *)
        sed -n '2,15p' "$0" >&2
        exit 2
        ;;
esac
