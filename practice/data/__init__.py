"""The data: datasets, augmentations (per image and batched), feeds and data schedules."""
