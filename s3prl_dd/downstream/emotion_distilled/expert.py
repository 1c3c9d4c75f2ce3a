"""s3prl DownstreamExpert for SUPERB ER that also reports UAR and writes predictions.

Same model, split and training loop as s3prl's ``emotion`` expert (projector -> UtteranceLevel
or DeepModel, 20% dev split with seed 0, test on ``test_fold``); differences: audio through
soundfile, a corpus directory instead of hand-made paths, UAR beside accuracy, the best
checkpoint chosen on dev by ``select_metric`` (UAR by default), and clear input errors."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torch.distributed import is_initialized

from s3prl.downstream.model import UtteranceLevel  # noqa: F401  (resolved by name below)
from s3prl.downstream.emotion.model import DeepModel  # noqa: F401

from ...metrics import uar as unweighted_average_recall
from ...protocol import session_dir, train_dev_indices
from ...utils import UserError
from .dataset import RealEmotionDataset, StoreItemDataset, collate_fn

MODELS = {"UtteranceLevel": UtteranceLevel, "DeepModel": DeepModel}


def resolve_data_paths(datarc: dict) -> tuple[Path, Path]:
    """(audio root, meta_data dir) from ``corpus`` (a directory made by ``s3prl-dd corpus``) or
    from s3prl's own ``root`` + ``meta_data`` keys."""
    if datarc.get("corpus"):
        corpus = Path(datarc["corpus"])
        info = corpus / "corpus.json"
        if not info.is_file():
            raise UserError(f"datarc.corpus: {corpus} is not a corpus directory (no corpus.json); "
                            "make one with `s3prl-dd corpus`")
        meta = json.loads(info.read_text())
        return Path(meta["root"]), Path(meta["meta_data"])
    for key in ("root", "meta_data"):
        if not datarc.get(key):
            raise UserError(f"datarc.{key} is not set (or set datarc.corpus)")
        if not Path(datarc[key]).exists():
            raise UserError(f"datarc.{key}: path not found: {datarc[key]}")
    return Path(datarc["root"]), Path(datarc["meta_data"])


class DownstreamExpert(nn.Module):
    def __init__(self, upstream_dim, downstream_expert, expdir, **kwargs):
        super().__init__()
        self.upstream_dim = upstream_dim
        self.datarc = downstream_expert["datarc"]
        self.modelrc = downstream_expert["modelrc"]
        self.expdir = Path(expdir)
        self.fold = self.datarc.get("test_fold") or kwargs.get("downstream_variant") or "fold1"
        self.select_metric = self.datarc.get("select_metric", "uar")

        root, meta_dir = resolve_data_paths(self.datarc)
        fold_dir = meta_dir / session_dir(self.fold)
        if not fold_dir.is_dir():
            raise UserError(f"datarc.test_fold={self.fold}: {fold_dir} does not exist")
        pre_load = self.datarc.get("pre_load", True)
        store = self._feature_store(**kwargs)
        if store is not None:  # every split as store-item requests for -u cached
            dataset = StoreItemDataset(store, fold_dir / "train_meta_data.json")
            self.test_dataset = StoreItemDataset(store, fold_dir / "test_meta_data.json")
        else:
            dataset = RealEmotionDataset(root, fold_dir / "train_meta_data.json", pre_load)
            self.test_dataset = RealEmotionDataset(root, fold_dir / "test_meta_data.json", pre_load)
        train_idx, dev_idx = train_dev_indices(len(dataset), self.datarc.get("valid_ratio", 0.2))
        self.train_dataset = self._training_set(dataset, train_idx, **kwargs)
        self.dev_dataset = Subset(dataset, dev_idx)
        self.idx2emotion = dataset.idx2emotion

        select = self.modelrc["select"]
        if select not in MODELS:
            raise UserError(f"modelrc.select={select!r}: choose one of {sorted(MODELS)}")
        self.projector = nn.Linear(upstream_dim, self.modelrc["projector_dim"])
        self.model = MODELS[select](
            input_dim=self.modelrc["projector_dim"], output_dim=dataset.class_num, **self.modelrc.get(select, {})
        )
        self.objective = nn.CrossEntropyLoss()
        # float64: a float32 copy of the best score can round above an equal later score (or below
        # it), and then a tie would pick the later step, where s3prl keeps the first
        self.register_buffer("best_score", torch.full((1,), -1.0, dtype=torch.float64))
        # Saved with the model in every runner checkpoint: this expert feeds the projector raw
        # Featurizer output, and whoever reuses the projector (the SID probe) must do the same.
        self.register_buffer("input_space_standardized", torch.zeros(1))

    def _feature_store(self, **kwargs):
        """The FeatureStore to send requests for, or None for audio. ``-u cached -k STORE`` is
        what serves the requests, so ``datarc.feature_store`` is only a check (or a reminder in
        the config) and must name the same store; with any other upstream a request would be
        decoded as audio and train on garbage."""
        from ...features.store import FeatureStore

        path, upstream = self.datarc.get("feature_store"), kwargs.get("upstream")
        if upstream != "cached":
            if path:
                raise UserError(f"datarc.feature_store={path} needs -u cached -k {path} (upstream is {upstream})")
            return None
        ckpt = kwargs.get("upstream_ckpt")
        if path and ckpt and Path(path).resolve() != Path(ckpt).resolve():
            raise UserError(f"datarc.feature_store={path} but -u cached -k {ckpt}: name the same store")
        if self.datarc.get("train_source", "real") != "real":
            raise UserError("-u cached serves the real corpus's features; use datarc.train_source=real")
        return FeatureStore.open(path or ckpt)

    def _training_set(self, dataset, train_idx, **kwargs):
        source = self.datarc.get("train_source", "real")
        if source == "real":
            return Subset(dataset, train_idx)
        if source == "synthetic":
            from .synthetic import synthetic_training_set

            return synthetic_training_set(self.datarc.get("synthetic") or {}, kwargs.get("upstream_ckpt"),
                                          dataset.class_dict, len(train_idx), kwargs.get("upstream_rate"))
        raise UserError(f"datarc.train_source={source!r}: choose 'real' or 'synthetic'")

    def get_downstream_name(self):
        return self.fold.replace("fold", "emotion")

    def _loader(self, dataset, train: bool):
        sampler = DistributedSampler(dataset) if train and is_initialized() else None
        return DataLoader(
            dataset,
            batch_size=self.datarc["train_batch_size" if train else "eval_batch_size"],
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.datarc.get("num_workers", 0),
            collate_fn=collate_fn,
        )

    def get_dataloader(self, mode, epoch: int = 0):
        if mode not in ("train", "dev", "test"):
            raise UserError(f"unknown split '{mode}' (train, dev, test)")
        loader = self._loader(getattr(self, f"{mode}_dataset"), train=mode == "train")
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        return loader

    def forward(self, mode, features, labels, filenames, records, **kwargs):
        device = features[0].device
        features_len = torch.IntTensor([len(f) for f in features]).to(device)
        features = self.projector(pad_sequence(features, batch_first=True))
        predicted, _ = self.model(features, features_len)
        labels = torch.LongTensor(labels).to(device)
        loss = self.objective(predicted, labels)

        records["loss"].append(loss.item())
        records["pred_id"] += predicted.argmax(-1).cpu().tolist()
        records["true_id"] += labels.cpu().tolist()
        records["filename"] += list(filenames)
        return loss

    def log_records(self, mode, records, logger, global_step, **kwargs):
        if not records["true_id"]:
            return []
        y_true, y_pred = records["true_id"], records["pred_id"]
        scores = {
            "acc": sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true),
            "uar": unweighted_average_recall(y_true, y_pred),
            "loss": float(torch.tensor(records["loss"]).mean()),
        }
        for key, value in scores.items():
            logger.add_scalar(f"emotion-{self.fold}/{mode}-{key}", value, global_step=global_step)

        save_names = []
        with open(self.expdir / "log.log", "a") as f:
            f.write(f"{mode} at step {global_step}: acc {scores['acc']:.4f} uar {scores['uar']:.4f}\n")
            if mode != "train":
                print(f"{mode} acc: {scores['acc']:.4f}  uar: {scores['uar']:.4f}")
            score = scores[self.select_metric]
            if mode == "dev" and score > self.best_score.item():
                self.best_score.fill_(score)
                f.write(f"New best on {mode} at step {global_step}: {self.select_metric} {score:.4f}\n")
                save_names.append(f"{mode}-best.ckpt")

        if mode in ("dev", "test"):
            self._write_predictions(mode, records, scores, global_step)
        return save_names

    def _write_predictions(self, mode, records, scores, global_step):
        names = self.idx2emotion
        rows = zip(records["filename"], records["pred_id"], records["true_id"])
        with open(self.expdir / f"{mode}_{self.fold}_predict.txt", "w") as f:
            f.writelines(f"{n} {names[p]}\n" for n, p, _ in zip(records["filename"], records["pred_id"], records["true_id"]))
        with open(self.expdir / f"{mode}_{self.fold}_truth.txt", "w") as f:
            f.writelines(f"{n} {names[t]}\n" for n, _, t in zip(records["filename"], records["pred_id"], records["true_id"]))
        summary = {"split": mode, "fold": self.fold, "step": global_step, **scores,
                   "predictions": [{"id": n, "pred": names[p], "true": names[t]} for n, p, t in rows]}
        (self.expdir / f"{mode}_{self.fold}_results.json").write_text(json.dumps(summary, indent=1))
