"""Training of the bundle's networks and calibration of the detector.

Nothing here needs pretrained weights: StyleFix cannot download a hub model
at run time, so the style losses use fixed random-filter features (which carry
texture statistics well, see ``losses.RandomFeatures``), adversarial and
colour-distribution terms.
"""
