"""The training set of GAN samples: one request per sample of the budget (see upstream/requests.py)."""
from __future__ import annotations

from torch.utils.data import Dataset

from ...gan.checkpoint import load_generator
from ...gan.sampler import budget, parse_counts
from ...upstream.requests import encode
from ...utils import UserError


class SyntheticRequests(Dataset):
    def __init__(self, items: list[tuple]):
        self.items = items

    def __getitem__(self, idx):
        return self.items[idx]

    def __len__(self):
        return len(self.items)


def synthetic_training_set(cfg: dict, generator_path: str | None, label_map: dict, n_real: int,
                           upstream_rate: int | None = None) -> SyntheticRequests:
    """``cfg`` = datarc.synthetic: {generator, ppc | total (+ balance) | counts, seed, length};
    ``total: full`` means as many samples as the real training split has (the paper's Table 3).
    ``upstream_rate``: the runner's Featurizer rate (s3prl passes it to the expert), i.e. what the
    ``synthetic`` upstream reports: requests must use it to come back as ``length`` frames."""
    path = cfg.get("generator") or generator_path
    if not path:
        raise UserError("datarc.train_source=synthetic needs the generator: -u synthetic -k generator.pt "
                        "(or datarc.synthetic.generator)")
    g = load_generator(path)
    if g.labels != label_map:
        raise UserError(f"generator {path} was distilled with labels {g.labels}, the corpus has {label_map}")
    counts = cfg.get("counts")
    if isinstance(counts, str):
        counts = parse_counts(counts, g.labels)
    total = cfg.get("total")
    if total == "full":
        total = n_real
    plan = budget(g.labels, g.prior, ppc=cfg.get("ppc") if counts is None and total is None else None,
                  total=total if counts is None else None, balance=cfg.get("balance", "prior"), counts=counts)
    seed, length = int(cfg.get("seed", 0)), int(cfg.get("length") or g.T)
    ds = int(upstream_rate or g.info.get("downsample_rate") or 160)
    items = []
    for name, n in plan.items():
        label = g.labels[name]
        for k in range(n):
            items.append((encode(label, k, n, seed, length, ds), label, f"gan-{name}-{k:06d}"))
    print(f"[emotion_distilled] - training on {len(items)} GAN samples {plan} from {path}")
    return SyntheticRequests(items)
