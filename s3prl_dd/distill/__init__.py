"""Training sets for the SUPERB ER model from several sources, under one signature:
real subsets (random, herding, k-center), GAN samples (i.i.d., herded, latent-distilled) and
Distribution Matching. See ``sources.make_training_set``."""
from .common import TrainingSet
from .sources import SOURCES, make_training_set, source_config

__all__ = ["SOURCES", "TrainingSet", "make_training_set", "source_config"]
