"""Training: losses fall, runs are deterministic for a seed, checkpoints resume exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from stylefix_core import colour, inject
from stylefix_core.correction import changed_visibly
from stylefix_core.synthetic import make_assets
from stylefix_core.training.checkpoint import Checkpoint
from stylefix_core.training.corrector import CorrectorTrainConfig, train_corrector
from stylefix_core.training.data import VISIBLE_TRIES, to_tensor, visibly_damaged
from stylefix_core.training.detector import DetectorTrainConfig, train_autoencoder
from stylefix_core.training.style import StyleTrainConfig, train_style
from stylefix_core.training.style_images import make_style_images

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return [to_tensor(a) for a in make_assets(seed=5, n=12, sizes=[(64, 64), (48, 80)])]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_autoencoder_is_deterministic_for_a_seed(images):
    cfg = DetectorTrainConfig(steps=6, batch_size=2, crop=32)
    _same(train_autoencoder(images, cfg, CPU), train_autoencoder(images, cfg, CPU))


def test_damage_for_training_is_visible_where_a_single_draw_often_is_not(photo_patches):
    """A damaged example that looks unchanged teaches a classifier to call
    clean images damaged; one draw of a random kind leaves some photo
    patches visibly unchanged, the drawn-again damage none."""
    patches = photo_patches[:60]
    once = torch.stack(
        [
            inject.random_injection(
                p, torch.Generator().manual_seed(i), severity_range=(0.2, 1.0)
            ).image
            for i, p in enumerate(patches)
        ]
    )
    again = torch.stack(
        [
            visibly_damaged(p, torch.Generator().manual_seed(i), (0.2, 1.0)).image
            for i, p in enumerate(patches)
        ]
    )
    clean = torch.stack(patches)
    assert not bool(changed_visibly(clean, once).all())
    assert bool(changed_visibly(clean, again).all())


def test_damage_that_cannot_be_made_visible_is_the_last_draw(monkeypatch):
    draws = []

    def invisible(image, generator, severity_range):
        draws.append(image + 1e-4 * len(draws))
        return inject.Injection(draws[-1], "noise", 0.0)

    monkeypatch.setattr(inject, "random_injection", invisible)
    flat = torch.full((3, 16, 16), 0.5)
    damaged = visibly_damaged(flat, torch.Generator().manual_seed(0), (0.0, 0.0))
    assert len(draws) == VISIBLE_TRIES
    assert damaged.image is draws[-1]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(images, tmp_path):
    cfg = CorrectorTrainConfig(steps=8, batch_size=2, crop=32)
    straight = train_corrector(images, cfg, CPU)
    checkpoint = Checkpoint(str(tmp_path / "corrector.pt"), every=4)
    train_corrector(images, replace(cfg, steps=4), CPU, checkpoint)  # stops half way: the "crash"
    resumed = train_corrector(images, cfg, CPU, checkpoint)
    _same(straight, resumed)


def test_style_training_moves_outputs_towards_the_style(images):
    style = [to_tensor(s) for s in make_style_images("riso", count=2)]
    models = train_style(images, style, StyleTrainConfig(steps=20, batch_size=2, crop=32), CPU)
    target = torch.cat([colour.colour_stats(s[None]) for s in style]).mean(0)
    with torch.inference_mode():
        before = torch.cat([colour.colour_stats(x[None]) for x in images])
        after = torch.cat([colour.colour_stats(models.generator(x[None])) for x in images])
    assert float((after - target).abs().mean()) < float((before - target).abs().mean())
    assert len(models.history) == 20


def test_corrector_learns_to_undo_damage(images):
    cfg = CorrectorTrainConfig(steps=150, batch_size=4, crop=32, kinds=("noise",))
    model = train_corrector(images, cfg, CPU)
    clean = images[0][None]
    noisy = inject.inject(clean, "noise", 0.8, seed=1)
    with torch.inference_mode():
        fixed = model(noisy)
    assert float((fixed - clean).abs().mean()) < float((noisy - clean).abs().mean())


def _reference_folder(images: list[torch.Tensor], folder) -> str:
    from stylefix_core.imaging import encode_image

    folder.mkdir()
    for i, image in enumerate(images):
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        (folder / f"good-{i:02d}.png").write_bytes(encode_image(pixels, "png"))
    return str(folder)


def test_train_detector_resumes_from_its_checkpoint_dir(images, tmp_path, caplog):
    from stylefix_core.bundle import load_bundle
    from stylefix_core.training.cli import main

    reference = _reference_folder(images, tmp_path / "good")
    args = ["detector", "--reference", reference, "--steps", "4", "--pixel-steps", "4"]
    args += ["--device", "cpu"]
    checkpoints = tmp_path / "state"
    assert (
        main([*args, "--out", str(tmp_path / "first"), "--checkpoint-dir", str(checkpoints)]) == 0
    )
    assert (checkpoints / "autoencoder.pt").exists()
    with caplog.at_level("INFO", logger="stylefix_core.training.checkpoint"):
        main([*args, "--out", str(tmp_path / "again"), "--checkpoint-dir", str(checkpoints)])
    assert "resumed from" in caplog.text
    first, again = load_bundle(str(tmp_path / "first")), load_bundle(str(tmp_path / "again"))
    assert first.manifest.version == again.manifest.version
    assert first.manifest.training["detector"]["config"]["pixel"]["steps"] == 4
    _same(first.autoencoder, again.autoencoder)


def test_train_default_refuses_knobs_its_fixed_recipe_would_ignore(tmp_path, capsys):
    from stylefix_core.training.cli import main

    for knob in (["--steps", "10"], ["--seed", "3"], ["--max-images", "5"]):
        with pytest.raises(SystemExit) as refused:
            main(["default", "--out", str(tmp_path / "b"), *knob])
        assert refused.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err


def test_a_checkpoint_of_other_data_is_refused_not_resumed(images, tmp_path):
    """Its networks were fitted to something else; at its last step it would train nothing."""
    from stylefix_core.training.checkpoint import CheckpointMismatch

    cfg = CorrectorTrainConfig(steps=4, batch_size=2, crop=32)
    url = str(tmp_path / "corrector.pt")
    train_corrector(images, cfg, CPU, Checkpoint(url, every=2, identity="first data"))
    with pytest.raises(CheckpointMismatch, match="another training run"):
        train_corrector(images[:6], cfg, CPU, Checkpoint(url, every=2, identity="other data"))


def test_train_detector_refuses_the_checkpoint_dir_of_other_reference_images(
    images, tmp_path, capsys
):
    from stylefix_core.training.cli import main

    state = str(tmp_path / "state")
    for name, chosen in (("first", images), ("second", images[:8])):
        reference = _reference_folder(chosen, tmp_path / f"good-{name}")
        argv = ["detector", "--reference", reference, "--steps", "4", "--pixel-steps", "4"]
        argv += ["--device", "cpu"]
        argv += ["--out", str(tmp_path / name), "--checkpoint-dir", state]
        assert main(argv) == (0 if name == "first" else 2)
    assert "saved by another training run" in capsys.readouterr().err
    assert not (tmp_path / "second").exists()


def test_another_training_recipe_is_another_version_and_refuses_old_checkpoints(
    images, tmp_path, monkeypatch, capsys
):
    """Same data and settings trained by changed training code give other
    networks: the bundle must not keep the version of the old ones, nor
    resume their checkpoints."""
    from stylefix_core.bundle import load_bundle
    from stylefix_core.training import bundle_training
    from stylefix_core.training.cli import main

    reference = _reference_folder(images, tmp_path / "good")
    argv = ["detector", "--reference", reference, "--steps", "4", "--pixel-steps", "4"]
    argv += ["--device", "cpu", "--checkpoint-dir", str(tmp_path / "state")]
    assert main([*argv, "--out", str(tmp_path / "old")]) == 0
    monkeypatch.setattr(bundle_training, "RECIPE_REVISION", bundle_training.RECIPE_REVISION + 1)
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    assert "saved by another training run" in capsys.readouterr().err
    assert main([*argv[:-2], "--out", str(tmp_path / "new")]) == 0
    old, new = load_bundle(str(tmp_path / "old")), load_bundle(str(tmp_path / "new"))
    assert old.manifest.version != new.manifest.version


def test_the_autoencoder_resumes_whatever_the_classifiers_settings(images, tmp_path, caplog):
    """Its checkpoint names what its own training reads, not the classifiers' settings."""
    from stylefix_core.training.cli import main

    reference = _reference_folder(images, tmp_path / "good")
    argv = ["detector", "--reference", reference, "--steps", "4", "--device", "cpu"]
    argv += ["--checkpoint-dir", str(tmp_path / "state")]
    assert main([*argv, "--pixel-steps", "4", "--out", str(tmp_path / "first")]) == 0
    with caplog.at_level("INFO", logger="stylefix_core.training.checkpoint"):
        assert main([*argv, "--pixel-steps", "6", "--out", str(tmp_path / "again")]) == 0
    assert "resumed from" in caplog.text
