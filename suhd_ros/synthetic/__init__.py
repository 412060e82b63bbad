"""The procedural shapes benchmark: scenes drawn by seed (scenes.py), COCO export (export.py)."""
