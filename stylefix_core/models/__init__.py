"""Plain torch modules. None of them knows about Beam, files or bundles.

Every module takes and returns RGB float32 tensors in [0, 1], shape (N, 3, H, W),
unless its docstring says otherwise (the damage classifiers return one logit per image;
the signature one reads signature vectors).
"""

from stylefix_core.models.autoencoder import ConvAutoencoder
from stylefix_core.models.corrector import ResidualCorrector
from stylefix_core.models.damage_classifier import DamageClassifier
from stylefix_core.models.discriminator import PatchDiscriminator
from stylefix_core.models.generator import StyleGenerator
from stylefix_core.models.pixel_damage import PixelDamageClassifier
from stylefix_core.models.reference_knn import ReferenceKnn

ARCHITECTURES = {
    "StyleGenerator": StyleGenerator,
    "PatchDiscriminator": PatchDiscriminator,
    "ConvAutoencoder": ConvAutoencoder,
    "ResidualCorrector": ResidualCorrector,
    "ReferenceKnn": ReferenceKnn,
    "DamageClassifier": DamageClassifier,
    "PixelDamageClassifier": PixelDamageClassifier,
}

__all__ = [
    "ARCHITECTURES",
    "ConvAutoencoder",
    "DamageClassifier",
    "PatchDiscriminator",
    "PixelDamageClassifier",
    "ReferenceKnn",
    "ResidualCorrector",
    "StyleGenerator",
]
