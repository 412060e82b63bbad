"""Scoring: COCO mAP of detections (coco.py); sweeps over T, f_c and codings (sweep.py)."""
