"""Data layer: CloudSEN12 / 38-Cloud readers, coverage labels, download, synthetic scenes, prepare."""
