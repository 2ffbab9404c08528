"""infra/ kept true to the code: template parameters, pins, container, scripts, schedule.

Everything that deploys the job names options, versions or commands that
live elsewhere; these tests fail when the two drift apart. The shell scripts
are run for real with DRY_RUN=1, which prints the commands they would run, and
those commands are parsed with the pipeline's own option parser. About 3 s.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from pipelines.options import REQUIRED_OPTIONS, StyleFixOptions, to_job_config
from stylefix_core.config import JobConfig, Mode

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
METADATA = INFRA / "dataflow" / "flex_template_metadata.json"
DOCKERFILE = INFRA / "dataflow" / "Dockerfile"
CONSTRAINTS = INFRA / "constraints.txt"
GPU_SERVICE_OPTION = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
IO = ("--input=gs://bucket/catalog/*.tar", "--output=gs://bucket/out")


# ------------------------------------------------------------------ helpers


def _option_actions() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    StyleFixOptions._add_argparse_args(parser)
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def _template_parameters() -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(METADATA.read_text())["parameters"]}


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line}: constraints pin exact versions"
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _project_requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["s3"] + extras["test"]]


def _dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
    """The commands a script would run, each split as the shell would."""
    result = subprocess.run(
        ["bash", str(INFRA / script), *args],
        env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def _job_argv(command: list[str]) -> list[str]:
    """The arguments after ``python -m pipelines.main`` (the venv's python or PATH's)."""
    assert command[0].split("/")[-1] == "python", command
    assert command[1:3] == ["-m", "pipelines.main"], command
    return command[3:]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------- Flex Template metadata


def test_template_parameters_are_exactly_the_pipeline_options():
    """Every option can be set through the template (more styles too), and nothing else."""
    parameters, options = _template_parameters(), _option_actions()
    assert set(parameters) == set(options), set(parameters) ^ set(options)
    for name in REQUIRED_OPTIONS:
        assert parameters[name]["isOptional"] is False, name
    for name, parameter in parameters.items():
        if name not in REQUIRED_OPTIONS:
            assert parameter["isOptional"] is True, name
        assert parameter["label"] and parameter["helpText"], name


def test_template_parameters_passed_as_the_launcher_does_give_the_defaults():
    parameters, options = _template_parameters(), _option_actions()
    argv = list(IO)
    for name in parameters.keys() - set(REQUIRED_OPTIONS):
        default = options[name].default
        text = str(default).lower() if isinstance(default, bool) else str(default)
        for pattern in parameters[name].get("regexes", []):
            assert re.fullmatch(pattern, text), (name, text, pattern)
        argv.append(f"--{name}={text}")
    config = to_job_config(PipelineOptions(argv))
    assert config == JobConfig(input="gs://bucket/catalog/*.tar", output="gs://bucket/out")


def test_template_regexes_admit_exactly_the_option_choices():
    parameters, options = _template_parameters(), _option_actions()
    for name, parameter in parameters.items():
        choices = options[name].choices
        if not choices:
            continue
        (pattern,) = parameter["regexes"]
        assert all(re.fullmatch(pattern, str(choice)) for choice in choices), name
        assert not re.fullmatch(pattern, "not-a-choice"), name


# ------------------------------------------------------------------- pins


def test_every_dependency_is_pinned_within_its_pyproject_range():
    pins = _pins()
    for requirement in _project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pin {requirement.name} in infra/constraints.txt"
        assert Version(pins[name]) in requirement.specifier, (requirement, pins[name])
    named = {canonicalize_name(r.name) for r in _project_requirements()}
    assert set(pins) == named, set(pins) ^ named


def test_this_environment_runs_the_pinned_versions():
    for name, pinned in _pins().items():
        installed = Version(importlib.metadata.version(name))
        assert installed.base_version == pinned, (
            f"{name} {installed} is installed but infra/constraints.txt pins {pinned}"
        )


# -------------------------------------------------------------- container


def _dockerfile() -> tuple[str, dict[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.M))
    return text, args


def test_the_container_runs_the_pinned_beam_and_python_with_the_beam_harness():
    text, args = _dockerfile()
    assert args["BEAM_VERSION"] == _pins()["apache-beam"]
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert Version(args["PYTHON_VERSION"]) in requires
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam" in text
    launcher = re.search(r"dataflow-templates-base/python(\d)(\d+)-template-launcher-base", text)
    assert f"{launcher[1]}.{launcher[2]}" == args["PYTHON_VERSION"]
    assert re.search(r"^COPY --from=beam /opt/apache/beam /opt/apache/beam$", text, flags=re.M)
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', text, flags=re.M)
    assert re.search(r"^FROM \$\{CUDA_BASE\}$", text, flags=re.M)
    assert args["CUDA_BASE"].startswith("nvidia/cuda:")


def test_the_container_installs_every_dependency_under_the_constraints():
    text, _ = _dockerfile()
    installs = re.findall(r"pip install (?!--upgrade)([^&\n]+)", text)
    assert installs and all("-c infra/constraints.txt" in line for line in installs), installs
    first = shlex.split(installs[0].replace("-c infra/constraints.txt", ""))
    listed = {canonicalize_name(Requirement(token).name) for token in first}
    project = _pyproject()["project"]
    runtime = project["dependencies"] + project["optional-dependencies"]["s3"]
    assert listed == {canonicalize_name(Requirement(r).name) for r in runtime}
    for copied in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M):
        assert (ROOT / copied).exists(), copied
    entry = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/stylefix/(\S+)", text)[1]
    assert (ROOT / entry).is_file() and entry == "pipelines/main.py"


# ------------------------------------------------------------------ Dataflow


LAUNCH_ENV = {"PROJECT": "proj", "BUCKET": "bkt", "INPUT": IO[0][8:], "OUTPUT": IO[1][9:]}


def test_the_dataflow_launch_parses_with_the_pipeline_parser():
    (command,) = _dry_run("dataflow/launch.sh", "direct", TAG="t1", **LAUNCH_ENV)
    options = PipelineOptions(_job_argv(command))
    config = to_job_config(options)
    assert (config.input, config.output, config.device) == (IO[0][8:], IO[1][9:], "cuda")
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(WorkerOptions).machine_type == "g2-standard-8"
    image = "us-central1-docker.pkg.dev/proj/stylefix/stylefix-worker:t1"
    assert options.view_as(WorkerOptions).sdk_container_image == image
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [GPU_SERVICE_OPTION]
    assert options.view_as(GoogleCloudOptions).temp_location == "gs://bkt/tmp"


def test_the_flex_template_run_passes_only_template_parameters():
    commands = _dry_run("dataflow/launch.sh", "all", TAG="t1", **LAUNCH_ENV)
    build = next(c for c in commands if c[:4] == ["gcloud", "dataflow", "flex-template", "build"])
    assert f"--metadata-file={METADATA.relative_to(ROOT)}" in build
    run = next(c for c in commands if c[:4] == ["gcloud", "dataflow", "flex-template", "run"])
    flags = dict(flag.split("=", 1) for flag in run if flag.startswith("--"))
    assert flags["--worker-machine-type"] == "g2-standard-8"
    assert flags["--additional-experiments"] == "use_runner_v2"
    assert (
        flags["--additional-pipeline-options"] == f"dataflow_service_options={GPU_SERVICE_OPTION}"
    )
    delimiter, body = re.fullmatch(r"\^(.)\^(.*)", flags["--parameters"]).groups()
    parameters = dict(item.split("=", 1) for item in body.split(delimiter))
    assert parameters.pop("sdk_container_image").endswith("/stylefix-worker:t1")
    assert set(parameters) <= set(_template_parameters())
    config = to_job_config(PipelineOptions([f"--{k}={v}" for k, v in parameters.items()]))
    assert config.device == "cuda" and config.batch.gpu_memory_share == 0.1


def test_the_launch_script_refuses_to_run_without_its_settings():
    result = subprocess.run(
        ["bash", str(INFRA / "dataflow" / "launch.sh"), "run"],
        env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PROJECT": "proj"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "BUCKET" in result.stderr


# -------------------------------------------------------------------- Flink


def _flink_documents() -> dict[str, dict]:
    documents = yaml.safe_load_all((INFRA / "flink" / "flink-deployment.yaml").read_text())
    return {d["kind"]: d for d in documents}


def test_the_flink_cluster_and_job_server_match_the_pinned_beam():
    documents = _flink_documents()
    spec = documents["FlinkDeployment"]["spec"]
    flink = spec["flinkVersion"].removeprefix("v").replace("_", ".")
    assert flink in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    assert spec["image"] == f"flink:{flink}"
    (server,) = documents["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert server["image"] == f"apache/beam_flink{flink}_job_server:{_pins()['apache-beam']}"
    pods = spec["taskManager"]["podTemplate"]["spec"]["containers"]
    sidecar = next(c for c in pods if c["name"] == "beam-worker-pool")
    assert sidecar["args"] == ["--worker_pool"]
    assert sidecar["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["flinkConfiguration"]["taskmanager.numberOfTaskSlots"] == "1"
    rest = f"{documents['FlinkDeployment']['metadata']['name']}-rest:8081"
    assert f"--flink-master={rest}" in server["args"]


@pytest.mark.parametrize("way", ["portable", "flink"])
def test_the_flink_submission_parses_with_the_pipeline_parser(way):
    env = {"INPUT": IO[0][8:], "OUTPUT": IO[1][9:], "MODE": "qa", "BUCKET": "bkt"}
    *forwards, command = _dry_run("flink/submit.sh", way, **env)
    options = PipelineOptions(_job_argv(command))
    assert to_job_config(options).mode is Mode.QA
    portable = options.view_as(PortableOptions)
    sidecar = next(
        c
        for c in _flink_documents()["FlinkDeployment"]["spec"]["taskManager"]["podTemplate"][
            "spec"
        ]["containers"]
        if c["name"] == "beam-worker-pool"
    )
    port = sidecar["ports"][0]["containerPort"]
    assert (portable.environment_type, portable.environment_config) == (
        "EXTERNAL",
        f"localhost:{port}",
    )
    spec = _flink_documents()["FlinkDeployment"]["spec"]
    assert options.view_as(FlinkRunnerOptions).parallelism == spec["taskManager"]["replicas"]
    if way == "flink":
        flink = spec["flinkVersion"].removeprefix("v").replace("_", ".")
        assert options.view_as(FlinkRunnerOptions).flink_version == flink
    assert forwards and forwards[0][:2] == ["kubectl", "port-forward"]


# ----------------------------------------------------------------- schedule


def test_the_nightly_dag_parses_without_airflow_and_its_job_arguments_with_the_parser():
    dag = _load(INFRA / "schedule" / "nightly_catalog_qa.py")
    if importlib.util.find_spec("airflow") is None:
        assert dag.dag is None
    config = to_job_config(PipelineOptions(dag.job_args()))
    assert (config.mode, config.device, config.resume) == (Mode.QA, "cuda", True)
    assert "{{ ds }}" in config.output and config.run_id == "nightly-qa-{{ ds_nodash }}"
    assert set(dag.JOB_PARAMETERS) <= set(_template_parameters())
    environment = dag.launch_body()["launchParameter"]["environment"]
    assert environment["machineType"] == "g2-standard-8"
    assert "use_runner_v2" in environment["additionalExperiments"]
    assert environment["additionalPipelineOptions"] == [
        f"dataflow_service_options={GPU_SERVICE_OPTION}"
    ]
    check = dag.check_command()
    assert check[:3] == ["stylefix", "report", dag.OUTPUT]
    assert check[check.index("--compare") + 1] == dag.PREVIOUS != dag.OUTPUT
    assert "--compare-optional" in check  # the first night has nothing to compare with
    assert "--max-flagged-share" in check


def test_the_cloud_scheduler_request_parses_with_the_parser():
    env = {
        "PROJECT": "proj",
        "BUCKET": "bkt",
        "IMAGE": "img:1",
        "TEMPLATE": "gs://bkt/t.json",
        "CATALOG": "gs://bkt/catalog/*.tar",
        "OUTPUT_ROOT": "gs://bkt/stylefix",
        "SERVICE_ACCOUNT": "launcher@proj.iam.gserviceaccount.com",
    }
    result = subprocess.run(
        ["bash", str(INFRA / "schedule" / "cloud_scheduler.sh")],
        env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    command, body = result.stdout.split("\n", 1)
    assert "flexTemplates:launch" in command
    launch = json.loads(body)["launchParameter"]
    parameters = launch["parameters"]
    assert set(parameters) <= set(_template_parameters())
    config = to_job_config(PipelineOptions([f"--{k}={v}" for k, v in parameters.items()]))
    assert (config.input, config.output) == (
        "gs://bkt/catalog/*.tar",
        "gs://bkt/stylefix/qa/latest",
    )
    assert config.mode is Mode.QA and not config.resume
    assert launch["environment"]["sdkContainerImage"] == "img:1"
    assert launch["containerSpecGcsPath"] == "gs://bkt/t.json"


@pytest.mark.parametrize("script", sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.sh")))
def test_shell_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", str(INFRA / script)], check=True)
    assert (INFRA / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_python_files_under_infra_compile():
    for path in INFRA.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    assert sys.version_info >= (3, 11)  # tomllib, as in the container
