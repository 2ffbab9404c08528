"""Training of the bundle's networks and calibration of the detector.

Nothing here needs pretrained weights: StyleFix cannot download a hub model
at run time, so the style losses use fixed random-filter features (which carry
texture statistics well, see ``losses.RandomFeatures``), adversarial and
colour-distribution terms.
"""

# The revision of the training recipe: raise it with any change to the
# training code that makes the same data and settings train other networks
# (how damage is drawn, a loss, a schedule, an initialisation). Bundle
# versions and checkpoint identities include it: a bundle trained by another
# recipe is another version, and a checkpoint left by one is not resumed by
# another. Raising it calls for `make train-default`: the shipped bundle must
# be named by the recipe that trained it (tests/test_bundle.py checks).
# Revision 2: the pixel damage classifier learns to name the kind of damage.
RECIPE_REVISION = 2
