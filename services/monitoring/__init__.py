"""What serving writes for monitoring: Prometheus metrics today; data capture and variants next.

Offline analysis that needs pandas or scikit-learn (baselines, drift) lives on the training side and reads
what serving wrote.
"""
