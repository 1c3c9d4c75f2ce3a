"""``-u wakehubert``: WakeHuBERT-tiny (a 0.64 M-parameter causal conv net distilled from HuBERT
Base layers 4/8/12), run with onnxruntime from the ONNX file in ``ovos-ww-plugin-wakeforge``.

Hidden states: the 8 residual blocks' outputs (nodes ``/student/blocks.{i}/Relu_1_output_0``,
8 x 256, 50 frames/s), exposed by adding them as graph outputs when the model is loaded.
``last_hidden_state`` is the last block, as for s3prl's own upstreams; the model's 128-d output
(its projection towards HuBERT's layers) is under the key ``projection`` (``-s projection``), not
among the hidden states, because s3prl's Featurizer stacks hidden states of one width.

Causality: every convolution (mel framing included) is padded on the left only, so frame t
reads audio up to its own end, and L samples give L // 320 frames. Right-padding a batch
therefore changes no valid frame (checked in tests/test_pretrained_upstreams.py). Each
utterance is given 160 zero samples at its end, so that it has round(L / 320) =
(L + 160) // 320 frames (ties rounded up), the count s3prl's Featurizer keeps: the runner on the
fly and a feature store then see the same frames, and batch padding (zeros too) cannot change
the last one."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

from ..utils import UserError
from .packaged import package_file

HOP, BLOCKS = 320, 8
INSTALL = "ovos-ww-plugin-wakeforge==0.3.0"
ONNX_FILE = "featurizers/wakehubert-tiny/wakehubert.onnx"
BLOCK_OUTPUTS = [f"/student/blocks.{i}/Relu_1_output_0" for i in range(BLOCKS)]


def _import_runtime():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise UserError(f"-u wakehubert needs onnxruntime and onnx ({e.name} is missing): "
                        "pip install onnxruntime onnx") from None
    return onnx, onnxruntime


def load_session(path, threads: int | None = None):
    """An onnxruntime session whose outputs are ``features`` then the 8 block outputs."""
    onnx, ort = _import_runtime()
    model = onnx.load(str(path))
    nodes = {o for n in model.graph.node for o in n.output}
    missing = [n for n in BLOCK_OUTPUTS if n not in nodes]
    if missing:
        raise UserError(f"{path} is not the WakeHuBERT-tiny graph this upstream knows (no node {missing[0]})")
    for name in BLOCK_OUTPUTS:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    # follow torch's thread setting, so OMP_NUM_THREADS / torch.set_num_threads also bound this
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(model.SerializeToString(), opts, providers=providers)


class WakeHubertUpstream(nn.Module):
    def __init__(self, onnx_path: str | None = None):
        super().__init__()
        self.path = onnx_path or package_file("ovos_ww_plugin_wakeforge", ONNX_FILE, INSTALL)
        self.session = load_session(self.path)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def get_downsample_rates(self, key: str = None) -> int:
        return HOP

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        device = wavs[0].device
        # frames past an item's own (L + 160) // 320 are padding; s3prl's Featurizer and the store trim them
        batch = pad_sequence([w.detach().float().cpu() for w in wavs], batch_first=True)
        # the half hop of zeros above, and at least one hop so the shortest clip gives a frame
        batch = torch.nn.functional.pad(batch, (0, max(HOP // 2, HOP - batch.shape[1])))
        out = dict(zip(self.outputs, self.session.run(None, {"waveform": batch.numpy()})))
        hidden = [torch.from_numpy(np.ascontiguousarray(out[n].transpose(0, 2, 1))).to(device) for n in BLOCK_OUTPUTS]
        projection = torch.from_numpy(out["features"]).to(device)
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1], "projection": projection}


class WakeHubertProjection(WakeHubertUpstream):
    """The same model with its 128-d output as the only hidden state, for a feature store of it
    (stores index ``hidden_states``)."""

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        projection = super().forward(wavs)["projection"]
        return {"hidden_states": [projection], "last_hidden_state": projection}


def wakehubert_proj(ckpt: str = None, model_config: str = None, refresh: bool = False, **kwargs) -> WakeHubertProjection:
    """s3prl hub entry: ``-u wakehubert_proj``, the 128-d output as one hidden state."""
    return WakeHubertProjection(ckpt)


def wakehubert(ckpt: str = None, model_config: str = None, refresh: bool = False, **kwargs) -> WakeHubertUpstream:
    """s3prl hub entry: ``-u wakehubert`` (``-k`` may name another copy of the ONNX file)."""
    return WakeHubertUpstream(ckpt)
