"""s3prl-dd: distil a speech-emotion dataset into a conditional GAN, inside s3prl."""
from . import compat

__version__ = "0.1.0"

compat.apply()
