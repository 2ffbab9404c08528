"""Bundle round trip, validation, and refusal of tampered or malformed bundles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stylefix_core.bundle import MODEL_ROLES, load_bundle, parse_manifest, save_bundle
from stylefix_core.errors import BundleError


@pytest.fixture(scope="module")
def default_bundle():
    return load_bundle("")


def test_default_bundle_is_trained_and_calibrated(default_bundle):
    manifest = default_bundle.manifest
    assert manifest.training_data_fingerprint.startswith("sha256:")
    assert manifest.training["content_images"] > 0
    cal = manifest.calibration
    assert 0 < cal.target_false_positive_rate < 0.1
    assert cal.measured_false_positive_rate <= 2 * cal.target_false_positive_rate + 0.02
    # trained weights differ from a fresh initialisation of the same architecture
    fresh = type(default_bundle.corrector)(**manifest.models["corrector"].params)
    last_trained = list(default_bundle.corrector.parameters())[-2]
    last_fresh = list(fresh.parameters())[-2]
    assert not torch.equal(last_trained, last_fresh)


@pytest.mark.parametrize("root", ["local", "memory"])
def test_round_trip_keeps_weights_and_manifest(default_bundle, tmp_path, root):
    url = str(tmp_path / "copy") if root == "local" else "memory://bundles/copy"
    written = save_bundle(url, default_bundle.manifest, default_bundle.networks())
    loaded = load_bundle(url)
    assert loaded.manifest == written
    for role in MODEL_ROLES:
        for (name, a), (_, b) in zip(
            getattr(default_bundle, role).state_dict().items(),
            getattr(loaded, role).state_dict().items(),
            strict=True,
        ):
            torch.testing.assert_close(a, b, msg=f"{role}.{name}")


def _copy(default_bundle, tmp_path: Path) -> Path:
    save_bundle(str(tmp_path / "b"), default_bundle.manifest, default_bundle.networks())
    return tmp_path / "b"


def test_tampered_weights_are_refused(default_bundle, tmp_path):
    folder = _copy(default_bundle, tmp_path)
    blob = bytearray((folder / "corrector.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (folder / "corrector.safetensors").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="does not match the manifest"):
        load_bundle(str(folder))


def test_missing_weights_and_missing_bundle_are_clear_errors(default_bundle, tmp_path):
    folder = _copy(default_bundle, tmp_path)
    (folder / "autoencoder.safetensors").unlink()
    with pytest.raises(BundleError, match="autoencoder.safetensors not found"):
        load_bundle(str(folder))
    with pytest.raises(BundleError, match="no bundle at"):
        load_bundle(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("calibration"), "missing field 'calibration'"),
        (lambda m: m["models"]["generator"].update(arch="os.system"), "unknown architecture"),
        (lambda m: m["models"]["corrector"].update(weights="../../etc/passwd"), "plain file name"),
        (
            lambda m: m["calibration"]["detectors"]["noise"].update(scale=0),
            "scale must be positive",
        ),
        (lambda m: m.update(format_version=99), "format_version"),
        (lambda m: m["models"].pop("discriminator"), "missing"),
        # a NaN threshold flags nothing; infinities switch a detector off or score -inf
        (lambda m: m["calibration"].update(threshold=float("nan")), "must be finite"),
        (lambda m: m["calibration"]["detectors"]["blur"].update(center=1e999), "must be finite"),
        (lambda m: m["calibration"]["detectors"]["noise"].update(scale=1e999), "must be finite"),
        (lambda m: m["calibration"].update(reference_stats=[0.1]), "must be 6 numbers"),
        (lambda m: m["calibration"].update(reference_spread=[0.0] * 6), "must be positive"),
        (lambda m: m["calibration"].update(target_false_positive_rate=0), "in \\(0, 1\\)"),
        (
            lambda m: m["models"]["autoencoder"].update(arch="ResidualCorrector"),
            "cannot be the autoencoder",
        ),
    ],
)
def test_malformed_manifests_name_the_problem(default_bundle, edit, message):
    data = json.loads(default_bundle.manifest.to_json())
    edit(data)
    with pytest.raises(BundleError, match=message):
        parse_manifest(json.dumps(data))


def test_a_number_too_large_for_a_float_is_refused_too(default_bundle):
    """JSON has no infinity, but 1e999 reads as one."""
    data = json.loads(default_bundle.manifest.to_json())
    data["calibration"]["threshold"] = 12345.5
    text = json.dumps(data).replace("12345.5", "1e999")
    with pytest.raises(BundleError, match="'threshold' is not finite"):
        parse_manifest(text)


def test_a_manifest_with_a_nan_cannot_be_written(default_bundle):
    nan = replace(default_bundle.manifest.calibration, threshold=float("nan"))
    with pytest.raises(ValueError, match="not JSON compliant"):
        replace(default_bundle.manifest, calibration=nan).to_json()


def test_a_bundle_that_cannot_be_saved_writes_nothing(default_bundle, tmp_path):
    """Updated in place, it must not be left with new weights beside its old manifest."""
    nan = replace(default_bundle.manifest.calibration, threshold=float("nan"))
    broken = replace(default_bundle.manifest, calibration=nan)
    with pytest.raises(ValueError):
        save_bundle(str(tmp_path / "b"), broken, default_bundle.networks())
    assert not (tmp_path / "b").exists()


def test_weights_that_do_not_fit_the_architecture_are_refused(default_bundle, tmp_path):
    folder = _copy(default_bundle, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"]["generator"]["params"]["base_channels"] = 8
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="do not fit"):
        load_bundle(str(folder))


def test_a_bundle_calibrated_for_older_statistics_loads_but_will_not_score(default_bundle):
    """Scores from a calibration fitted to other statistic definitions would be
    wrong without any error; the bundle must still load so it can be recalibrated."""
    from stylefix_core.scoring.scorer import Scorer

    data = json.loads(default_bundle.manifest.to_json())
    del data["calibration"]["statistics_revision"]  # as written before the field existed
    stale = parse_manifest(json.dumps(data))
    assert stale.calibration.statistics_revision == 1
    with pytest.raises(BundleError, match="recalibrate"):
        Scorer(None, None, None, stale.calibration)
    Scorer.for_bundle(default_bundle)  # the shipped bundle matches


def test_the_launcher_refuses_a_stale_bundle_before_any_worker_starts(default_bundle, tmp_path):
    from pipelines.main import run

    manifest = default_bundle.manifest
    stale = replace(manifest, calibration=replace(manifest.calibration, statistics_revision=1))
    url = str(tmp_path / "stale")
    save_bundle(url, stale, default_bundle.networks())
    with pytest.raises(BundleError, match="recalibrate"):
        run([f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}", f"--bundle={url}"])
    assert not (tmp_path / "out").exists()


def test_a_calibration_lacking_a_newer_detector_loads_only_if_it_is_older(default_bundle, tmp_path):
    from stylefix_core.scoring.scorer import Scorer

    data = json.loads(default_bundle.manifest.to_json())
    del data["calibration"]["detectors"]["reference_colour"]
    with pytest.raises(BundleError, match="reference_colour"):
        parse_manifest(json.dumps(data))  # a current calibration must cover every detector
    data["calibration"]["statistics_revision"] = 3  # written before the detector existed
    older = parse_manifest(json.dumps(data))
    save_bundle(str(tmp_path / "older"), older, default_bundle.networks())
    loaded = load_bundle(str(tmp_path / "older"))  # loads, so it can be recalibrated
    assert "reference_colour" not in loaded.manifest.calibration.detectors
    with pytest.raises(BundleError, match="recalibrate"):
        Scorer.for_bundle(loaded)


def test_a_statistics_revision_that_is_not_a_number_is_refused(default_bundle):
    data = json.loads(default_bundle.manifest.to_json())
    data["calibration"]["statistics_revision"] = "3"
    with pytest.raises(BundleError, match="statistics_revision"):
        parse_manifest(json.dumps(data))


@pytest.mark.parametrize(("role", "revision"), [("damage", 5), ("pixel_damage", 9)])
def test_a_bundle_from_before_a_damage_classifier_loads_and_must_be_retrained_to_save(
    default_bundle, tmp_path, role, revision
):
    folder = _copy(default_bundle, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["models"][role]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"missing \\['{role}'\\]"):
        load_bundle(str(folder))  # a current calibration scores with it
    manifest["calibration"]["statistics_revision"] = revision  # as written before it existed
    (folder / "manifest.json").write_text(json.dumps(manifest))
    older = load_bundle(str(folder))
    assert getattr(older, role) is None and role not in older.networks()
    with pytest.raises(BundleError, match="retrain its detector"):
        save_bundle(str(tmp_path / "again"), older.manifest, older.networks())


def test_the_default_bundle_is_named_by_the_recipe_that_trains_it(default_bundle):
    """Its version is the one ``make train-default`` gives with the code as it
    stands: a changed setting, calibration or recipe revision
    (``RECIPE_REVISION``) without a retrained bundle fails here, not silently
    in a catalog owner's reports."""
    from stylefix_core.training.bundle_training import training_fingerprint, version_name
    from stylefix_core.training.default import default_config, default_images

    fingerprint = training_fingerprint(*default_images(), default_config())
    manifest = default_bundle.manifest
    assert manifest.training_data_fingerprint == fingerprint
    assert manifest.version == version_name(manifest.style, fingerprint)
