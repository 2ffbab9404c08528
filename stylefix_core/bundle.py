"""The model bundle: ``manifest.json`` plus ``*.safetensors`` weights.

A bundle is a folder at any fsspec URL. Loading it never unpickles anything:
weights are safetensors, the manifest is JSON validated field by field, and
each weights file must match the SHA-256 the manifest records, so a swapped or
truncated file is refused instead of half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from stylefix_core.errors import BundleError
from stylefix_core.io import storage
from stylefix_core.models import ARCHITECTURES

BUNDLE_FORMAT = "stylefix-bundle"
BUNDLE_FORMAT_VERSION = 1
MODEL_ROLES = (
    "generator",
    "discriminator",
    "autoencoder",
    "embedding",
    "corrector",
    "damage",
    "pixel_damage",
)
# Roles added after the first bundles were written: a bundle without them still
# loads (so that `stylefix train detector` can add them), and its calibration,
# of an older statistics revision, is refused for scoring.
LATER_ROLES = ("damage", "pixel_damage")
WEIGHTS_SUFFIX = ".safetensors"
DEFAULT_BUNDLE_DIR = Path(__file__).parent / "default_bundle"
# Every bundle of the current statistics revision calibrates every detector,
# so every report has every score column; scoring.scorer uses this same tuple
# as its DETECTORS.
DETECTOR_NAMES = (
    "embedding",
    "reference_colour",
    "autoencoder",
    "discriminator",
    "colour",
    "texture",
    "blur",
    "noise",
    "colour_noise",
    "checkerboard",
    "blocking",
    "quantisation",
    "collapse",
    "falloff",
    "damage",
    "pixel_damage",
)
# The definitions of the image statistics in scoring.features that a
# calibration was fitted to. Raise it whenever one of them changes: a bundle
# calibrated for another revision would turn the new values into wrong z-scores
# without any error, so scoring with it fails and says how to recalibrate
# (loading still works, so `stylefix train detector` can start from it).
# Revision 2: ``blocking`` counts lone steps on the 8x8 grid; revision 3: a
# lone step must also exceed its larger neighbour by four 8-bit levels;
# revision 4: the ``reference_colour`` detector is calibrated too; revision 5:
# ``texture`` reads the finest scale on textured pixels only; revision 6: the
# ``falloff`` statistic and the ``damage`` classifier of statistical signatures
# (which also read ``contours``); revision 7: ``blur`` reads the gradient of
# detail, the luma's smooth part (a Gaussian of 16 px) set aside; revision 8:
# that smooth part is taken on a 4x coarser grid; revision 9: ``falloff`` is
# the depth of a bowl fitted to the luma, against the content's spread (the
# signature keeps the old reading, as ``corner_darkness``); revision 10: the
# ``pixel_damage`` classifier, a small convolutional network on the pixels;
# revision 11: ``falloff`` reads the shallower curvature of the log luma,
# against the spread of the content's coarse layout; revision 12: in qa mode
# ``colour`` is the distance to the nearest of the nearest references' colours,
# and the discriminator is read on its rejecting side only.
STATISTICS_REVISION = 12


@dataclass(frozen=True)
class ModelEntry:
    """One network of the bundle: its class, hyper-parameters and weights file."""

    arch: str
    params: dict[str, Any]
    weights: str
    sha256: str


@dataclass(frozen=True)
class DetectorCalibration:
    """Robust normalisation of one detector's raw value: z = (raw - center) / scale."""

    center: float
    scale: float


@dataclass(frozen=True)
class Calibration:
    """How raw detector values become one anomaly score and a decision.

    ``threshold`` applies to the combined score (the largest detector z) and was
    chosen so that ``target_false_positive_rate`` of reference images scored out
    of sample (held out, or cross-fitted) exceed it; ``measured_false_positive_rate``
    is what those images gave.
    ``reference_stats`` are colour statistics of the reference set (qa mode
    target); ``style_shift`` is how the style typically moves content colour
    statistics (style mode target). Both are 6-vectors, see scoring.features.
    """

    detectors: dict[str, DetectorCalibration]
    threshold: float
    target_false_positive_rate: float
    measured_false_positive_rate: float
    reference_stats: list[float]
    reference_spread: list[float]
    style_shift: list[float]
    statistics_revision: int = STATISTICS_REVISION


@dataclass(frozen=True)
class Manifest:
    """Everything about a bundle except the weights themselves."""

    name: str
    style: str
    version: str
    training_data_fingerprint: str
    models: dict[str, ModelEntry]
    calibration: Calibration
    created_by: str = "stylefix"
    training: dict[str, Any] = field(default_factory=dict)
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_FORMAT_VERSION

    def to_json(self) -> str:
        """Strict JSON: a NaN or infinity anywhere is an error, never a token."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, allow_nan=False) + "\n"


@dataclass
class Bundle:
    """A loaded bundle: manifest plus its networks, in eval mode, on CPU."""

    manifest: Manifest
    generator: nn.Module
    discriminator: nn.Module
    autoencoder: nn.Module
    embedding: nn.Module
    corrector: nn.Module
    damage: nn.Module | None = None  # absent from bundles older than LATER_ROLES
    pixel_damage: nn.Module | None = None

    def networks(self) -> dict[str, nn.Module]:
        roles = (role for role in MODEL_ROLES if getattr(self, role) is not None)
        return {role: getattr(self, role) for role in roles}


def default_bundle_url() -> str:
    return str(DEFAULT_BUNDLE_DIR)


def _require(data: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise BundleError(f"manifest {where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BundleError(f"manifest {where}: field {key!r} has type {type(value).__name__}")
    return value


# The role each architecture may fill: weights that fit another role's
# network would load and score without any error.
ROLE_ARCHITECTURES = {
    "generator": "StyleGenerator",
    "discriminator": "PatchDiscriminator",
    "autoencoder": "ConvAutoencoder",
    "embedding": "ReferenceKnn",
    "corrector": "ResidualCorrector",
    "damage": "DamageClassifier",
    "pixel_damage": "PixelDamageClassifier",
}
COLOUR_STATS_DIM = 6  # the length of a colour_stats row


def _number(data: dict, key: str, where: str) -> float:
    """A finite number (JSON spells an infinity 1e999 too)."""
    value = float(_require(data, key, (int, float), where))
    if not math.isfinite(value):
        raise BundleError(f"manifest {where}: field {key!r} is not finite")
    return value


def _parse_calibration(data: dict) -> Calibration:
    detectors = {
        name: DetectorCalibration(
            center=_number(d, "center", f"detector {name}"),
            scale=_number(d, "scale", f"detector {name}"),
        )
        for name, d in _require(data, "detectors", dict, "calibration").items()
    }
    revision = _revision(data.get("statistics_revision", 1))
    missing = [d for d in DETECTOR_NAMES if d not in detectors]
    # An older calibration may lack detectors added since; it still loads so
    # that it can be recalibrated, and scoring refuses it by its revision.
    if missing and revision == STATISTICS_REVISION:
        raise BundleError(f"manifest calibration: no calibration for detector(s) {missing}")
    if any(d.scale <= 0 for d in detectors.values()):
        raise BundleError("manifest calibration: every detector scale must be positive")
    vectors = {
        k: _colour_vector(data, k) for k in ("reference_stats", "reference_spread", "style_shift")
    }
    if any(v <= 0 for v in vectors["reference_spread"]):
        raise BundleError("manifest calibration: every reference_spread must be positive")
    rates = {
        k: _number(data, k, "calibration")
        for k in ("target_false_positive_rate", "measured_false_positive_rate")
    }
    if not 0.0 < rates["target_false_positive_rate"] < 1.0:
        raise BundleError("manifest calibration: target_false_positive_rate must lie in (0, 1)")
    if not 0.0 <= rates["measured_false_positive_rate"] <= 1.0:
        raise BundleError("manifest calibration: measured_false_positive_rate must lie in [0, 1]")
    return Calibration(
        detectors=detectors,
        threshold=_number(data, "threshold", "calibration"),
        **rates,
        **vectors,
        # Bundles from before the field existed were calibrated for revision 1.
        statistics_revision=revision,
    )


def _colour_vector(data: dict, key: str) -> list[float]:
    values = _require(data, key, list, "calibration")
    if len(values) != COLOUR_STATS_DIM or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise BundleError(f"manifest calibration: {key} must be {COLOUR_STATS_DIM} numbers")
    return [float(v) for v in values]


def _refuse_constant(name: str) -> float:
    raise BundleError(f"manifest.json holds {name}: every number must be finite")


def _revision(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleError(
            f"manifest calibration: field 'statistics_revision' has type {type(value).__name__}"
        )
    return value


def require_current_statistics(calibration: Calibration) -> None:
    """Refuse a calibration fitted to other definitions of the image statistics.

    Its z-scores would be wrong without any error. Loading such a bundle is
    fine (recalibrating starts from it); scoring with it is not.
    """
    if calibration.statistics_revision != STATISTICS_REVISION:
        raise BundleError(
            f"the bundle was calibrated for image statistics revision "
            f"{calibration.statistics_revision}, this StyleFix computes revision "
            f"{STATISTICS_REVISION}; recalibrate it with `stylefix train detector "
            "--bundle OLD --reference GOOD_IMAGES --out NEW`"
        )


def parse_manifest(text: str) -> Manifest:
    """Validate a manifest's JSON; every problem is a BundleError naming the field."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BundleError(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"manifest.json is not a {BUNDLE_FORMAT} manifest")
    if data.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"unsupported bundle format_version {data.get('format_version')!r}")
    models_raw = _require(data, "models", dict, "top level")
    missing = [r for r in MODEL_ROLES if r not in models_raw and r not in LATER_ROLES]
    if missing:
        raise BundleError(f"manifest models: missing {missing}")
    calibration = _parse_calibration(_require(data, "calibration", dict, "top level"))
    absent = [r for r in LATER_ROLES if r not in models_raw]
    if absent and calibration.statistics_revision == STATISTICS_REVISION:
        raise BundleError(
            f"manifest models: missing {absent}, which a calibration of statistics "
            f"revision {STATISTICS_REVISION} scores with"
        )
    models = {}
    for role in (r for r in MODEL_ROLES if r in models_raw):
        entry = models_raw[role]
        arch = _require(entry, "arch", str, role)
        if arch not in ARCHITECTURES:
            raise BundleError(f"manifest {role}: unknown architecture {arch!r}")
        if arch != ROLE_ARCHITECTURES[role]:
            raise BundleError(
                f"manifest {role}: architecture {arch!r} cannot be the {role} "
                f"(expected {ROLE_ARCHITECTURES[role]!r})"
            )
        weights = _require(entry, "weights", str, role)
        if "/" in weights or "\\" in weights or weights.startswith("."):
            raise BundleError(
                f"manifest {role}: weights must be a plain file name, got {weights!r}"
            )
        if not weights.endswith(WEIGHTS_SUFFIX):
            raise BundleError(
                f"manifest {role}: weights must be a {WEIGHTS_SUFFIX} file, got {weights!r}"
            )
        models[role] = ModelEntry(
            arch,
            _require(entry, "params", dict, role),
            weights,
            _require(entry, "sha256", str, role),
        )
    return Manifest(
        name=_require(data, "name", str, "top level"),
        style=_require(data, "style", str, "top level"),
        version=_require(data, "version", str, "top level"),
        training_data_fingerprint=_require(data, "training_data_fingerprint", str, "top level"),
        models=models,
        calibration=calibration,
        created_by=str(data.get("created_by", "stylefix")),
        training=dict(data.get("training", {})),
    )


def _build_network(role: str, entry: ModelEntry, blob: bytes) -> nn.Module:
    digest = hashlib.sha256(blob).hexdigest()
    if digest != entry.sha256:
        raise BundleError(
            f"{entry.weights}: sha256 {digest[:12]}... does not match the manifest ({entry.sha256[:12]}...)"
        )
    try:
        network = ARCHITECTURES[entry.arch](**entry.params)
    except TypeError as exc:
        raise BundleError(f"manifest {role}: bad params for {entry.arch}: {exc}") from exc
    try:
        state = load_safetensors(blob)
    except SafetensorError as exc:
        raise BundleError(f"{entry.weights}: not a readable safetensors file: {exc}") from exc
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise BundleError(f"{entry.weights}: weights do not fit {entry.arch}: {exc}") from exc
    return network.eval().requires_grad_(False)


def load_bundle(url: str = "") -> Bundle:
    """Load a bundle from a folder URL (empty: the default bundle)."""
    url = url or default_bundle_url()
    manifest_url = storage.join(url, "manifest.json")
    try:
        manifest = parse_manifest(storage.read_bytes(manifest_url).decode("utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"no bundle at {url}: {manifest_url} not found") from exc
    networks = {}
    for role, entry in manifest.models.items():
        try:
            blob = storage.read_bytes(storage.join(url, entry.weights))
        except FileNotFoundError as exc:
            raise BundleError(f"bundle {url}: weights file {entry.weights} not found") from exc
        networks[role] = _build_network(role, entry, blob)
    return Bundle(manifest=manifest, **networks)


def save_bundle(url: str, manifest: Manifest, networks: dict[str, nn.Module]) -> Manifest:
    """Write weights and a manifest whose hashes match them; returns that manifest."""
    absent = [role for role in MODEL_ROLES if role not in networks]
    if absent:
        raise BundleError(
            f"cannot save a bundle without {absent}: retrain its detector first "
            "(`stylefix train detector`)"
        )
    models, blobs = {}, {}
    for role in MODEL_ROLES:
        entry = manifest.models[role]
        state = {
            k: v.detach().to("cpu", torch.float32).contiguous()
            for k, v in networks[role].state_dict().items()
        }
        blobs[entry.weights] = save_safetensors(state)
        digest = hashlib.sha256(blobs[entry.weights]).hexdigest()
        models[role] = ModelEntry(entry.arch, entry.params, entry.weights, digest)
    final = Manifest(**{**manifest.__dict__, "models": models})
    # Checked before anything is written: a bundle updated in place (--out
    # equal to --bundle) must not be left with new weights and its old manifest.
    text = final.to_json()
    parse_manifest(text)
    for name, blob in blobs.items():
        storage.write_bytes_atomic(storage.join(url, name), blob)
    storage.write_bytes_atomic(storage.join(url, "manifest.json"), text.encode())
    return final
