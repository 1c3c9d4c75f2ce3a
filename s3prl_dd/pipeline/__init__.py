"""``s3prl-dd pipeline``: corpus -> features -> teacher pool -> GANs -> training sets ->
downstream ER -> metrics -> report, every stage cached on disk and skipped when complete."""
from .run import run_pipeline  # noqa: F401
