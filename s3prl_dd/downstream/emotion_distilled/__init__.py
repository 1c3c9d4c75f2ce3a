"""``-d emotion_distilled``: s3prl's SUPERB ER recipe on real corpora or on GAN samples."""
