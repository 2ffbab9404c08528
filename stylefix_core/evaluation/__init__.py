"""Quality evaluation: real photographs, injected anomalies, detection and correction metrics."""
