"""The GAN distiller: models (GAN-CNN, GAN-ATT, GAN-MLP), losses (one per paper equation) and
the helpers that fit real utterances to the GAN's fixed input length."""
from s3prl_dd.gan.data import crop_or_tile, fit_real
from s3prl_dd.gan.losses import (
    classification_loss,
    critic_adversarial_loss,
    critic_loss,
    diversity_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    generator_loss,
    gradient_penalty,
    softmax_matching_loss,
)
from s3prl_dd.gan.models import (
    ARCHS,
    ConditionalGenerator,
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
    build_gan,
    count_parameters,
    size_on_disk_bytes,
)

__all__ = [
    "ARCHS", "ConditionalGenerator", "ConvDiscriminator", "ConvGenerator", "MLPDiscriminator",
    "MLPGenerator", "build_gan", "count_parameters", "size_on_disk_bytes",
    "crop_or_tile", "fit_real",
    "classification_loss", "critic_adversarial_loss", "critic_loss", "diversity_loss",
    "feature_matching_loss", "generator_adversarial_loss", "generator_loss", "gradient_penalty",
    "softmax_matching_loss",
]
