"""The paper's privacy probe (Section 5.3, Table 4) and a memorisation check of generators.

- ``ser``: the first layer of a trained SER model as a frozen speaker embedding
  (``SERProjector``, ``load_ser_projector``); ``-u ser_probe`` serves it to s3prl's runner.
- ``speaker``: within-corpus speaker-ID probe on a feature store (``speaker_probe``).
- ``memorization``: nearest-neighbour distances of generated samples to the real training data
  vs. those of held-out real data (``memorization_check``, ``check_generator``).
- ``sid``: s3prl's SUPERB SID recipe (``-d voxceleb1``) on the probe upstream (``run_sid``).
- ``run``: ``probe_run`` (the pipeline's ``sid_probe`` block, Table 4 markdown) and the body of
  ``s3prl-dd probe``."""
from .memorization import check_generator, generator_samples, memorization_check, nn_distances
from .run import markdown_table, probe_run
from .ser import SERProjector, checkpoint_kind, load_ser_projector
from .speaker import probe_config, speaker_probe, speaker_split, train_speaker_probe

__all__ = ["SERProjector", "load_ser_projector", "checkpoint_kind", "speaker_probe", "speaker_split",
           "train_speaker_probe", "probe_config", "memorization_check", "check_generator",
           "generator_samples", "nn_distances", "probe_run", "markdown_table"]
