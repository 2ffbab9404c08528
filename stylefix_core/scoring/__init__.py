"""Anomaly scoring: raw detector values, their calibration, and the decision."""
