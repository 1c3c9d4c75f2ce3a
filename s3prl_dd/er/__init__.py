"""The SUPERB ER downstream on cached features: model, training, and the teacher pool."""
