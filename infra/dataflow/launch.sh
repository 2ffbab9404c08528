#!/usr/bin/env bash
# Build the StyleFix worker image and Flex Template, and run the job on Dataflow
# with one NVIDIA L4 per worker.
#
#   infra/dataflow/launch.sh image      # docker build + push the worker/launcher image
#   infra/dataflow/launch.sh template   # gcloud dataflow flex-template build
#   infra/dataflow/launch.sh run        # run the Flex Template (what the schedule does)
#   infra/dataflow/launch.sh direct     # submit from this checkout, no template
#   infra/dataflow/launch.sh all        # image, template, run
#
# Settings come from the environment (defaults in brackets):
#   PROJECT, BUCKET            required: GCP project; bucket for the template and temp files
#   INPUT, OUTPUT              required for run/direct: shard glob and output prefix (gs://...)
#   REGION [us-central1]  REPOSITORY [stylefix]  TAG [git short hash]
#   IMAGE [REGION-docker.pkg.dev/PROJECT/REPOSITORY/stylefix-worker:TAG]
#   MODE [style]  MAX_WORKERS [8]  MACHINE_TYPE [g2-standard-8]  GPU_TYPE [nvidia-l4]
#   MAX_BATCH_SIZE [32]  GPU_MEMORY_SHARE [0.1]: Dataflow starts one SDK process per
#     vCPU, each with its own copy of the models on the one GPU, so each may use
#     about 1/vCPUs of its memory for batches.
#   PYTHON [.venv/bin/python where make install made it, else python]
#   DRY_RUN=1  print the commands instead of running them.
set -euo pipefail

cd "$(dirname "$0")/../.."

if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi

REGION="${REGION:-us-central1}"
REPOSITORY="${REPOSITORY:-stylefix}"
TAG="${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}"
MODE="${MODE:-style}"
MAX_WORKERS="${MAX_WORKERS:-8}"
MACHINE_TYPE="${MACHINE_TYPE:-g2-standard-8}"
GPU_TYPE="${GPU_TYPE:-nvidia-l4}"
MAX_BATCH_SIZE="${MAX_BATCH_SIZE:-32}"
GPU_MEMORY_SHARE="${GPU_MEMORY_SHARE:-0.1}"
GPU_SERVICE_OPTIONS="worker_accelerator=type:${GPU_TYPE};count:1;install-nvidia-driver"
METADATA=infra/dataflow/flex_template_metadata.json

need() {
    local name
    for name in "$@"; do
        if [[ -z "${!name:-}" ]]; then
            echo "launch.sh: set $name (see the top of this file)" >&2
            exit 2
        fi
    done
}

# Run a command, or with DRY_RUN=1 print it, shell-quoted, on one line.
run() {
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "$@"
        printf '\n'
    else
        "$@"
    fi
}

build_image() {
    run docker build -f infra/dataflow/Dockerfile -t "$IMAGE" .
    run docker push "$IMAGE"
}

build_template() {
    need BUCKET
    run gcloud dataflow flex-template build "$TEMPLATE" \
        --image="$IMAGE" \
        --sdk-language=PYTHON \
        --metadata-file="$METADATA" \
        --project="$PROJECT"
}

run_template() {
    need BUCKET INPUT OUTPUT
    # ^~^ makes "~" the separator, so commas in a glob ({a,b}) stay in the value.
    run gcloud dataflow flex-template run "stylefix-${MODE}-$(date -u +%Y%m%d-%H%M%S)" \
        --template-file-gcs-location="$TEMPLATE" \
        --project="$PROJECT" \
        --region="$REGION" \
        --temp-location="gs://${BUCKET}/tmp" \
        --staging-location="gs://${BUCKET}/staging" \
        --worker-machine-type="$MACHINE_TYPE" \
        --max-workers="$MAX_WORKERS" \
        --additional-experiments=use_runner_v2 \
        --additional-pipeline-options="dataflow_service_options=${GPU_SERVICE_OPTIONS}" \
        --parameters="^~^input=${INPUT}~output=${OUTPUT}~mode=${MODE}~device=cuda~max_batch_size=${MAX_BATCH_SIZE}~gpu_memory_share=${GPU_MEMORY_SHARE}~sdk_container_image=${IMAGE}"
}

run_direct() {
    need BUCKET INPUT OUTPUT
    run "$PYTHON" -m pipelines.main \
        --runner=DataflowRunner \
        --project="$PROJECT" \
        --region="$REGION" \
        --temp_location="gs://${BUCKET}/tmp" \
        --staging_location="gs://${BUCKET}/staging" \
        --sdk_container_image="$IMAGE" \
        --sdk_location=container \
        --experiments=use_runner_v2 \
        --dataflow_service_options="$GPU_SERVICE_OPTIONS" \
        --machine_type="$MACHINE_TYPE" \
        --max_num_workers="$MAX_WORKERS" \
        --input="$INPUT" \
        --output="$OUTPUT" \
        --mode="$MODE" \
        --device=cuda \
        --max_batch_size="$MAX_BATCH_SIZE" \
        --gpu_memory_share="$GPU_MEMORY_SHARE"
}

need PROJECT
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/stylefix-worker:${TAG}}"
TEMPLATE="gs://${BUCKET:-}/templates/stylefix-${TAG}.json"

case "${1:-}" in
    image) build_image ;;
    template) build_template ;;
    run) run_template ;;
    direct) run_direct ;;
    all)
        # one command a line: under `a && b` bash ignores set -e inside a, and
        # a failed docker build would push and run the image left from before
        build_image
        build_template
        run_template
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac
