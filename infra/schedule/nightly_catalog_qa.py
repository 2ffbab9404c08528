"""Nightly catalog QA: StyleFix in qa mode on Dataflow, then a check that fails, and so alerts,
when the run failed or flagged too much.

An Airflow DAG (Cloud Composer, or any Airflow 2.4+ with the Google and
cncf.kubernetes providers). Each night it

1. runs the Flex Template built by ``infra/dataflow/launch.sh template`` in
   ``--mode=qa`` on GPU workers over the catalog, writing to
   ``OUTPUT_ROOT/qa/<date>``, and waits for the job (a failed job fails the task);
2. runs ``stylefix report OUTPUT --compare PREVIOUS --max-flagged-share X`` in
   the same worker image: it exits non-zero when the share of flagged images
   passes the limit or the run's report is incomplete, which fails the task.

A failed task fails the DAG run and Airflow e-mails ``STYLEFIX_ALERT_EMAILS``.

Settings are Airflow Variables (``stylefix_project``, ``stylefix_region``,
``stylefix_bucket``, ``stylefix_catalog``, ``stylefix_output_root``,
``stylefix_image``, ``stylefix_template`` and optionally
``stylefix_max_flagged_share``), read when a run is rendered, not when the
file is parsed. The job's arguments are plain data below, tested against the
pipeline's own option parser and the Flex Template's parameters; the file
parses without Airflow, which it imports only to build the DAG.
"""

from __future__ import annotations

import datetime as dt
import os

DAG_ID = "stylefix_nightly_catalog_qa"
SCHEDULE = "0 2 * * *"  # 02:00 UTC, after the catalog's daily export
MAX_FLAGGED_SHARE = "{{ var.value.get('stylefix_max_flagged_share', '0.10') }}"

OUTPUT_ROOT = "{{ var.value.stylefix_output_root }}"
OUTPUT = OUTPUT_ROOT + "/qa/{{ ds }}"
PREVIOUS = OUTPUT_ROOT + "/qa/{{ macros.ds_add(ds, -1) }}"
IMAGE = "{{ var.value.stylefix_image }}"

# Flex Template parameters: each is a StyleFix pipeline option.
JOB_PARAMETERS: dict[str, str] = {
    "input": "{{ var.value.stylefix_catalog }}",
    "output": OUTPUT,
    "mode": "qa",
    "device": "cuda",
    "run_id": "nightly-qa-{{ ds_nodash }}",
    # A retried run of the same night skips the shards it already finished.
    "resume": "true",
    "max_batch_size": "32",
    # g2-standard-8: eight SDK processes share one L4.
    "gpu_memory_share": "0.1",
}

# Dataflow's runtime environment for the launch: GPU workers, Runner v2, the image.
ENVIRONMENT: dict[str, object] = {
    "machineType": "g2-standard-8",
    "maxWorkers": 8,
    "tempLocation": "gs://{{ var.value.stylefix_bucket }}/tmp",
    "stagingLocation": "gs://{{ var.value.stylefix_bucket }}/staging",
    "sdkContainerImage": IMAGE,
    "additionalExperiments": ["use_runner_v2"],
    "additionalPipelineOptions": [
        "dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
    ],
}


def job_args(parameters: dict[str, str] = JOB_PARAMETERS) -> list[str]:
    """The parameters as the Flex Template launcher hands them to ``pipelines.main``."""
    return [f"--{name}={value}" for name, value in parameters.items()]


def check_command() -> list[str]:
    """The check that fails the run when it flagged too much (or did not finish)."""
    return [
        "stylefix",
        "report",
        OUTPUT,
        "--compare",
        PREVIOUS,
        "--compare-optional",  # the first night, or after a night that did not run
        "--max-flagged-share",
        MAX_FLAGGED_SHARE,
    ]


def launch_body() -> dict:
    """The ``flexTemplates.launch`` request for tonight's run."""
    return {
        "launchParameter": {
            "jobName": "stylefix-qa-{{ ds_nodash }}",
            "containerSpecGcsPath": "{{ var.value.stylefix_template }}",
            "parameters": JOB_PARAMETERS,
            "environment": ENVIRONMENT,
        }
    }


def build_dag():
    """The DAG itself; needs Airflow and its Google and Kubernetes providers."""
    from airflow import DAG
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.google.cloud.operators.dataflow import (
        DataflowStartFlexTemplateOperator,
    )

    alert_to = [a for a in os.environ.get("STYLEFIX_ALERT_EMAILS", "").split(",") if a]
    default_args = {
        "owner": "stylefix",
        "retries": 1,
        "retry_delay": dt.timedelta(minutes=10),
        "email": alert_to,
        "email_on_failure": bool(alert_to),
        "email_on_retry": False,
    }
    with DAG(
        dag_id=DAG_ID,
        schedule=SCHEDULE,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),  # noqa: UP017 (Airflow's Python)
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        tags=["stylefix"],
    ) as dag:
        run_qa = DataflowStartFlexTemplateOperator(
            task_id="run_qa",
            project_id="{{ var.value.stylefix_project }}",
            location="{{ var.value.stylefix_region }}",
            body=launch_body(),
            wait_until_finished=True,
        )
        check = KubernetesPodOperator(
            task_id="check_flagged_share",
            name="stylefix-check",
            image=IMAGE,
            cmds=check_command()[:1],
            arguments=check_command()[1:],
            get_logs=True,
        )
        run_qa >> check
    return dag


try:
    import airflow  # noqa: F401 - only to know whether this is an Airflow scheduler
except ImportError:
    dag = None
else:
    dag = build_dag()
