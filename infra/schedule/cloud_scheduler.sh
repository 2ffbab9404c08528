#!/usr/bin/env bash
# The simple alternative to the Airflow DAG: Cloud Scheduler launches the Flex
# Template every night with a fixed request (nightly_launch.json).
#
# What it lacks against nightly_catalog_qa.py: one output prefix overwritten
# each night (OUTPUT_ROOT/qa/latest, hence no --resume) and no flagged-share
# check. For alerts, create a Cloud Monitoring alert policy on the metric
# dataflow.googleapis.com/job/is_failed for jobs named stylefix-nightly-qa.
#
# Settings: PROJECT, REGION [us-central1], BUCKET, IMAGE, TEMPLATE (gs:// path of
# the Flex Template spec), CATALOG (shard glob), OUTPUT_ROOT, SERVICE_ACCOUNT
# (may launch Dataflow jobs), SCHEDULE ["0 2 * * *"]; DRY_RUN=1 prints instead.
set -euo pipefail

cd "$(dirname "$0")"

REGION="${REGION:-us-central1}"
SCHEDULE="${SCHEDULE:-0 2 * * *}"
for name in PROJECT BUCKET IMAGE TEMPLATE CATALOG OUTPUT_ROOT SERVICE_ACCOUNT; do
    if [[ -z "${!name:-}" ]]; then
        echo "cloud_scheduler.sh: set $name (see the top of this file)" >&2
        exit 2
    fi
done

body="$(mktemp)"
trap 'rm -f "$body"' EXIT
# Whole-token replacement of the placeholders in the request.
sed -e "s#\"TEMPLATE\"#\"${TEMPLATE}\"#" \
    -e "s#\"CATALOG\"#\"${CATALOG}\"#" \
    -e "s#\"OUTPUT_ROOT/#\"${OUTPUT_ROOT}/#" \
    -e "s#gs://BUCKET/#gs://${BUCKET}/#" \
    -e "s#\"IMAGE\"#\"${IMAGE}\"#" \
    nightly_launch.json >"$body"

command=(
    gcloud scheduler jobs create http stylefix-nightly-qa
    --project="$PROJECT"
    --location="$REGION"
    --schedule="$SCHEDULE"
    --time-zone=UTC
    --http-method=POST
    --uri="https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch"
    --oauth-service-account-email="$SERVICE_ACCOUNT"
    --headers=Content-Type=application/json
    --message-body-from-file="$body"
)
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "${command[@]}"
    printf '\n'
    cat "$body"
else
    "${command[@]}"
fi
