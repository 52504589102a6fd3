"""The in-vehicle runtime: one window in, one decision out, in about a hundred NumPy operations.

Why it exists: at batch 1 a torch detector spends its time dispatching, not computing. The
student's VGAE + GAT + DQN is ~150 tensor operations at 5-20 us of dispatch each on a small
CPU, so one 25-node window took ~2.4 ms while its arithmetic is a few ten thousand
multiply-adds. NumPy dispatches an operation on arrays this small in one to three
microseconds, and the layout below needs fewer operations:

- **dense attention**: a window has a few dozen nodes, so a GATv2 layer's softmax over each
  node's incoming edges is a masked row softmax of an ``n x n`` logit matrix per head, and
  the aggregation is one matrix product, instead of gather/scatter operations;
- **the VGAE and the GAT run side by side**: both read the same window graph, so their input
  layers are one matrix product and their k-th GATv2 layers one stacked layer whose heads
  are the two models' heads (block-diagonal weights), so the edge gathers, the softmax and
  the aggregation run once for both;
- a CAN-ID embedding folds into the input layer as a per-ID table (one gather).

``StreamingDetector`` evaluates the same function as ``Detector.decide``
(``tests/test_streaming.py`` holds every score and decision to it) and needs NumPy only:
``save`` writes one ``.npz`` that ``load`` reads in a process without torch, which is what
an embedded target can carry.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from canids.util import atomic_path
from canids.graphs.vocab import window_known_id_share
from canids.stages.fusion_rule import F1_OPTIMAL, NEVER, SCALAR, VGAECalibration, familiar, fused_decision, fused_score, fusion_state
from canids.stages.thresholds import DecisionThresholds

if TYPE_CHECKING:  # the runtime itself never imports torch
    from canids.graphs.graphset import GraphSet
    from canids.stages.detector import Detector

#: Format tag written into every saved runtime; ``load`` refuses anything else.
FORMAT = "canids-streaming-detector/1"

_F32 = np.float32
_MODELS = ("vgae", "gat")
#: float32 constants as 0-d arrays: a ufunc takes one without converting a NumPy scalar on
#: every call (the same dtype, so the same values).
_F32_ZERO, _F32_NO_PEAK, _F32_TINY = (np.array(v, _F32) for v in (0.0, -3e38, 1e-16))


@dataclass(frozen=True)
class Decision:
    """One window's verdict: flag (1 = attack), fused attack score, the fusion weight on the GAT,
    and whether the window looks like the training vehicle's traffic (False: under the fusion's
    ``familiar_id_share`` of its CAN IDs known, another vehicle's or injected, and decided by the VGAE
    alone; ``fusion_rule.familiar``)."""

    flag: int
    score: float
    alpha: float
    familiar: bool = True


class StreamingDetector:
    """Window-at-a-time detector equal to ``Detector.decide``, with NumPy as its only dependency."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        self.meta = meta
        self.window_size = int(meta["window_size"])
        a = self.arrays
        self._widths = meta["widths"]  # input-layer width of each model: where one's columns end
        self._layers = [_StackedConv.take(a, f"layer{k}", layer) for k, layer in enumerate(meta["layers"])]
        self._slope = np.array(meta["slope"], _F32)  # (a 0-d array: see _leaky_relu)
        self._norm_eps = _F32(meta["norm_eps"])
        self._id_weight = float(meta["id_weight"])
        self._policy = [(a[f"policy.{i}.w"], a[f"policy.{i}.b"]) for i in range(meta["policy_layers"])]
        self._alphas = a["policy.alphas"].astype(np.float64)
        self._threshold = float(meta["threshold"])
        self._calibration = VGAECalibration(self._threshold, float(meta["log_scale"]))
        if "decision_thresholds" in meta:
            self._thresholds = DecisionThresholds(**meta["decision_thresholds"])
        else:  # older exports: the fused threshold (0.5 before the false-alarm budget), no familiarity rule
            self._thresholds = DecisionThresholds(fusion=float(meta.get("decision_threshold", F1_OPTIMAL)), vgae_alone=float(meta.get("vgae_alone", NEVER)), gat_alone=float(meta.get("gat_alone", NEVER)))
        #: whether ``decide`` needs each node's vocabulary index: the models embed or reconstruct
        #: CAN IDs, or the decision rule asks how many of a window's IDs are known
        self.uses_vocab = "input.vocab_table" in a or "vgae.id_decoder.w" in a or self._thresholds.familiar_id_share > 0
        #: The window features the VGAE scores (``VGAEConfig.window_columns``; older exports: all).
        self._window_columns = None if meta.get("vgae_window_columns") is None else np.asarray(meta["vgae_window_columns"], np.intp)
        graph_dim = a["vgae.graph_decoder.1.w"].shape[1] if self._window_columns is None else int(meta["graph_dim"])
        self._dims = (a["input.w"].shape[0], self._layers[0].edge_w.shape[0] if self._layers else 0, graph_dim)
        #: The training vocabulary's CAN IDs: ``Vocabulary(can_ids)`` builds windows for this detector.
        self.can_ids = a["vocab.can_ids"]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_detector(cls, detector: "Detector") -> "StreamingDetector":
        """Lay a trained ``Detector``'s parameters out as the runtime's arrays."""
        from canids.models import gat as gat_module
        from canids.models import vgae as vgae_module

        vgae, gat, policy = detector.vgae, detector.gat, detector.policy
        if vgae_module._SLOPE != gat_module._SLOPE:
            raise ValueError("the streaming runtime runs the VGAE and GAT side by side and needs one activation slope for both")
        arrays: dict[str, np.ndarray] = {}

        def linear(name: str, lin) -> None:
            arrays[f"{name}.w"], arrays[f"{name}.b"] = _np(lin.weight).T, _np(lin.bias)

        # Input layer of both models: x @ [W_vgae | W_gat]; an embedding E contributes (E @ W_e)[id].
        node_dim = vgae.cfg.node_dim
        arrays["input.w"] = np.concatenate([_np(m.input.weight).T[:node_dim] for m in (vgae, gat)], 1)
        arrays["input.b"] = np.concatenate([_np(m.input.bias) for m in (vgae, gat)])
        if vgae.embed is not None or gat.embed is not None:
            tables = [_np(m.embed.weight) @ _np(m.input.weight).T[node_dim:] if m.embed is not None else np.zeros((vgae.cfg.vocab_size, m.input.out_features), _F32) for m in (vgae, gat)]
            arrays["input.vocab_table"] = np.concatenate(tables, 1)
        layers = []
        for k in range(max(len(vgae.convs), len(gat.convs))):
            convs = {name: m.convs[k] for name, m in zip(_MODELS, (vgae, gat)) if k < len(m.convs)}
            layers.append(_StackedConv.build(arrays, f"layer{k}", convs))
        linear("vgae.mu", vgae.mu)
        linear("vgae.feature_decoder.0", vgae.feature_decoder[0])
        linear("vgae.feature_decoder.1", vgae.feature_decoder[2])
        linear("vgae.graph_decoder.0", vgae.graph_decoder[0])
        linear("vgae.graph_decoder.1", vgae.graph_decoder[2])
        if vgae.id_decoder is not None:
            linear("vgae.id_decoder", vgae.id_decoder)
        arrays["vgae.score_scale"] = _np(vgae.score_scale)
        for i, norm in enumerate(gat.norms):
            arrays[f"gat.norm{i}.w"], arrays[f"gat.norm{i}.b"] = _np(norm.weight), _np(norm.bias)
        linear("gat.head.0", gat.head[0])
        linear("gat.head.1", gat.head[3])
        policy_linears = [m for m in policy.net if hasattr(m, "weight")]
        for i, lin in enumerate(policy_linears):
            linear(f"policy.{i}", lin)
        arrays["policy.alphas"] = _np(policy.alphas())
        arrays["vocab.can_ids"] = np.asarray(detector.vocab.can_ids, dtype=np.int64)  # to build windows' node_vocab
        meta = {
            "format": FORMAT,
            "window_size": int(detector.window_size),
            "widths": [vgae.input.out_features, gat.input.out_features],
            "layers": layers,
            "slope": float(vgae_module._SLOPE),
            "norm_eps": float(gat.norms[0].eps) if len(gat.norms) else 1e-5,
            "id_weight": float(vgae.cfg.id_weight),
            "policy_layers": len(policy_linears),
            "threshold": float(detector.calibration.threshold),
            "log_scale": float(detector.calibration.log_scale),
            "decision_thresholds": detector.thresholds.to_dict(),
            "graph_dim": int(vgae.cfg.graph_dim),
            "vgae_window_columns": None if vgae.cfg.window_columns is None else [int(c) for c in vgae.cfg.window_columns],
        }
        return cls(arrays, meta)

    @classmethod
    def from_run(cls, variant_dir: str | Path, onboarding: str | Path | None = None, vehicle: str | None = None) -> "StreamingDetector":
        """From ``ROOT/{dataset}/{variant}`` of a finished run, recalibrated to a vehicle when given
        an ``onboarding`` file of that run (``canids onboard``, or the stage's calibration.json
        with the test split as ``vehicle``); records each source's sha256."""
        from canids.stages.detector import Detector, checkpoint_paths
        from canids.util import sha256_file

        paths = checkpoint_paths(variant_dir)
        detector = Detector.from_checkpoints(*paths.values())
        sources = {stage: sha256_file(path) for stage, path in paths.items()}
        if onboarding is not None:
            from canids.stages.onboarding import read_vehicle

            detector = detector.onboarded(read_vehicle(onboarding, sources["fusion"], vehicle))
            sources["onboarding"] = sha256_file(onboarding)
        runtime = cls.from_detector(detector)
        runtime.meta["sources"] = sources
        return runtime

    def save(self, path: str | Path) -> Path:
        """Write the runtime as one ``.npz`` (arrays + JSON metadata); a partial file never has the final name."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, __meta__=np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8), **self.arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "StreamingDetector":
        with np.load(Path(path), allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise ValueError(f"{path}: not a streaming detector (no __meta__ entry); write one with StreamingDetector.save")
            meta = json.loads(data["__meta__"].tobytes().decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
        return cls(arrays, meta)

    # ------------------------------------------------------------------ inference
    def decide(self, x: np.ndarray, edge_index: np.ndarray, edge_attr: np.ndarray, u: np.ndarray, node_vocab: np.ndarray | None = None) -> Decision:
        """Decision for one window graph.

        ``x`` [n, node_dim] float32; ``edge_index`` [2, E] local node indices, each (src, dst)
        pair once (as ``build_graphs`` makes them); ``edge_attr`` [E, edge_dim]; ``u``
        [graph_dim]; ``node_vocab`` [n] each node's index in ``Vocabulary(can_ids)``, needed
        when ``uses_vocab`` (the models use it, or the decision rule counts known IDs).
        """
        a, slope = self.arrays, self._slope
        u = u.reshape(-1)
        n = x.shape[0]
        if x.ndim != 2 or x.shape[1] != self._dims[0] or edge_index.ndim != 2 or edge_index.shape[0] != 2 or edge_attr.shape != (edge_index.shape[1], self._dims[1]) or u.size != self._dims[2]:
            raise ValueError(
                f"window shapes x {x.shape}, edge_index {edge_index.shape}, edge_attr {edge_attr.shape}, u {u.shape}; "
                f"expected x [n, {self._dims[0]}], edge_index [2, E], edge_attr [E, {self._dims[1]}], u [{self._dims[2]}]"
            )
        if self.uses_vocab and (node_vocab is None or node_vocab.shape != (n,)):
            raise ValueError(f"this detector uses CAN-ID vocabulary indices: pass node_vocab [{n}] (each node's index in Vocabulary(can_ids), as WindowGraph.arrays() gives), got {None if node_vocab is None else node_vocab.shape}")
        src, dst = edge_index[0], edge_index[1]
        pair = dst * n + src  # position of each edge in a flattened n x n attention matrix
        h = x @ a["input.w"] + a["input.b"]
        if "input.vocab_table" in a:
            h = h + a["input.vocab_table"].take(node_vocab, 0)
        h = _leaky_relu(h, slope)
        width_v = self._widths[0]
        h_vgae, h_gat = h[:, :width_v], h[:, width_v:]
        jumping = [h_gat]
        for k, layer in enumerate(self._layers):
            both = len(layer.models) == 2
            if both:  # before the first layer, the two models' halves side by side are h itself
                h_in = h if k == 0 else np.concatenate([h_vgae, h_gat], 1)
            else:
                h_in = h_vgae if layer.models[0] == "vgae" else h_gat
            msg = layer.attend(h_in, src, dst, pair, edge_attr, n)
            h_out = h_in + _leaky_relu(msg, slope)
            if both:
                h_vgae, h_gat = h_out[:, : h_vgae.shape[1]], h_out[:, h_vgae.shape[1] :]
            elif layer.models[0] == "vgae":
                h_vgae = h_out
            else:
                h_gat = h_out
            if "gat" in layer.models:
                h_gat = self._layer_norm(h_gat, a[f"gat.norm{k}.w"], a[f"gat.norm{k}.b"])
                jumping.append(h_gat)
        score = self._vgae_score(a, h_vgae, x, u, n, node_vocab)
        p_gat = self._gat_probability(a, jumping, u, n)
        p_vgae = self._calibration.probability(score, SCALAR)
        q = fusion_state(score, p_vgae, p_gat, self._threshold, SCALAR)
        for i, (w, b) in enumerate(self._policy):
            q = q @ w + b
            if i < len(self._policy) - 1:
                q = np.maximum(q, _F32_ZERO)
        alpha = float(self._alphas[int(q.argmax())])
        t = self._thresholds
        known = window_known_id_share(node_vocab) if t.familiar_id_share > 0 else 1.0
        flag = int(fused_decision(alpha, p_gat, p_vgae, t.fusion, t.vgae_alone, t.gat_alone, **t.rule(known)))
        return Decision(flag, fused_score(alpha, p_gat, p_vgae), alpha, familiar(known, t.familiar_id_share))

    @property
    def familiar_id_share(self) -> float:
        """Below this share of known CAN IDs a window is another vehicle's (0: the rule is off)."""
        return self._thresholds.familiar_id_share

    def decide_graphs(self, graphs: "GraphSet") -> np.ndarray:
        """Decisions for every window of a ``GraphSet``, one window at a time (what a vehicle does)."""
        return np.array([self.decide(*window).flag for window in window_arrays(graphs, with_vocab=self.uses_vocab)], dtype=np.int64)

    def _layer_norm(self, h: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        inv_width = _F32(1.0 / h.shape[1])
        centred = h - np.add.reduce(h, 1, keepdims=True) * inv_width  # (ndarray.sum, without its Python wrapper)
        variance = np.add.reduce(centred * centred, 1, keepdims=True) * inv_width
        return centred / np.sqrt(variance + self._norm_eps) * weight + bias

    def _vgae_score(self, a, h: np.ndarray, x: np.ndarray, u: np.ndarray, n: int, node_vocab) -> float:
        """``vgae.window_score``: node and window reconstruction errors relative to normal traffic."""
        slope = self._slope
        mu = h @ a["vgae.mu.w"] + a["vgae.mu.b"]
        d = mu @ a["vgae.feature_decoder.0.w"] + a["vgae.feature_decoder.0.b"]
        diff = (_leaky_relu(d, slope) @ a["vgae.feature_decoder.1.w"] + a["vgae.feature_decoder.1.b"] - x).ravel()
        node_err = float(diff @ diff) / diff.size  # mean over nodes of the mean over features
        if "vgae.id_decoder.w" in a:
            logits = mu @ a["vgae.id_decoder.w"] + a["vgae.id_decoder.b"]
            peak = logits.max(1)
            log_norm = np.log(np.exp(logits - peak[:, None]).sum(1)) + peak
            node_err += self._id_weight * float((log_norm - logits[np.arange(n), node_vocab]).sum()) / n
        g = np.add.reduce(mu, 0) * _F32(1.0 / n) @ a["vgae.graph_decoder.0.w"] + a["vgae.graph_decoder.0.b"]
        diff_u = _leaky_relu(g, slope) @ a["vgae.graph_decoder.1.w"] + a["vgae.graph_decoder.1.b"] - (u if self._window_columns is None else u.take(self._window_columns))
        win_err = float(diff_u @ diff_u) / diff_u.size
        scale = a["vgae.score_scale"]
        return float(_F32(max(node_err / float(scale[0]), 1e-12) * max(win_err / float(scale[1]), 1e-12)))

    def _gat_probability(self, a, jumping: list[np.ndarray], u: np.ndarray, n: int) -> float:
        """The GAT's attack probability: jumping knowledge, mean+max pooling, MLP head."""
        slope = self._slope
        jk = np.concatenate(jumping, 1) if len(jumping) > 1 else jumping[0]
        pooled = np.concatenate([np.add.reduce(jk, 0) * _F32(1.0 / n), np.maximum.reduce(jk, 0), u])
        z = pooled @ a["gat.head.0.w"] + a["gat.head.0.b"]
        logits = _leaky_relu(z, slope) @ a["gat.head.1.w"] + a["gat.head.1.b"]
        p = 1.0 / (1.0 + math.exp(min(80.0, float(logits[0] - logits[1]))))  # softmax(logits)[1]
        return float(min(max(_F32(p), _F32(1e-7)), _F32(1 - 1e-7)))  # float32, as torch: near 1, log1p(-p) is sensitive


@dataclass(frozen=True)
class _StackedConv:
    """The k-th GATv2 layers of the VGAE and the GAT (or of one of them) evaluated as one layer.

    The models' heads sit side by side; each head has ``channels`` columns (the widest model's;
    a narrower model's heads are zero-padded, and ``keep`` drops the padding afterwards).
    Weights are block-diagonal, so no model sees the other's features.
    """

    models: tuple[str, ...]
    w: np.ndarray  # [sum of input widths, 2 * heads * channels]: lin_l columns | lin_r columns
    b: np.ndarray
    edge_w: np.ndarray  # [edge_dim, heads * channels]
    att: np.ndarray  # [heads * channels, heads]: logits = leaky_relu(e) @ att
    bias: np.ndarray  # the models' output biases, concatenated
    keep: np.ndarray | None  # output columns that are not padding (None: all are)
    heads: int
    channels: int
    attention_slope: np.ndarray  # 0-d float32 (see _leaky_relu)

    @staticmethod
    def build(arrays: dict[str, np.ndarray], prefix: str, convs: dict) -> dict:
        """Write the stacked layer's arrays under ``prefix`` and return its metadata."""
        first = next(iter(convs.values()))
        for name, conv in convs.items():
            if conv.res is not None or conv.share_weights or conv.lin_edge is None or not conv.concat:
                raise ValueError(f"{name} {prefix}: the streaming runtime expects GATv2Conv(concat=True, share_weights=False, residual=False) with edge features")
            if conv.negative_slope != first.negative_slope:
                raise ValueError(f"{prefix}: the VGAE's and GAT's attention slopes differ ({conv.negative_slope} vs {first.negative_slope})")
        heads = sum(c.heads for c in convs.values())
        channels = max(c.out_channels for c in convs.values())
        width_in = sum(c.in_channels for c in convs.values())
        edge_dim = first.edge_dim
        w = np.zeros((width_in, 2 * heads * channels), _F32)
        b = np.zeros(2 * heads * channels, _F32)
        edge_w = np.zeros((edge_dim, heads * channels), _F32)
        att = np.zeros((heads * channels, heads), _F32)
        keep, row, head0 = [], 0, 0
        for conv in convs.values():
            c_m = conv.out_channels
            w_l, w_r, w_e = _np(conv.lin_l.weight).T, _np(conv.lin_r.weight).T, _np(conv.lin_edge.weight).T
            b_l, b_r = _np(conv.lin_l.bias), _np(conv.lin_r.bias)
            a_m = _np(conv.att).reshape(conv.heads, c_m)
            for h in range(conv.heads):
                col = (head0 + h) * channels
                src = slice(h * c_m, (h + 1) * c_m)
                w[row : row + conv.in_channels, col : col + c_m] = w_l[:, src]
                w[row : row + conv.in_channels, heads * channels + col : heads * channels + col + c_m] = w_r[:, src]
                b[col : col + c_m], b[heads * channels + col : heads * channels + col + c_m] = b_l[src], b_r[src]
                edge_w[:, col : col + c_m] = w_e[:, src]
                att[col : col + c_m, head0 + h] = a_m[h]
                keep.extend(range(col, col + c_m))
            row += conv.in_channels
            head0 += conv.heads
        arrays[f"{prefix}.w"], arrays[f"{prefix}.b"], arrays[f"{prefix}.edge_w"], arrays[f"{prefix}.att"] = w, b, edge_w, att
        arrays[f"{prefix}.bias"] = np.concatenate([_np(c.bias) for c in convs.values()])
        if len(keep) != heads * channels:
            arrays[f"{prefix}.keep"] = np.asarray(keep, dtype=np.int64)
        return {"models": list(convs), "heads": heads, "channels": channels, "attention_slope": float(first.negative_slope)}

    @classmethod
    def take(cls, arrays: dict[str, np.ndarray], prefix: str, meta: dict) -> "_StackedConv":
        return cls(
            tuple(meta["models"]),
            arrays[f"{prefix}.w"],
            arrays[f"{prefix}.b"],
            arrays[f"{prefix}.edge_w"],
            arrays[f"{prefix}.att"],
            arrays[f"{prefix}.bias"],
            arrays.get(f"{prefix}.keep"),
            int(meta["heads"]),
            int(meta["channels"]),
            np.array(meta["attention_slope"], _F32),
        )

    def attend(self, h: np.ndarray, src: np.ndarray, dst: np.ndarray, pair: np.ndarray, edge_attr: np.ndarray, n: int) -> np.ndarray:
        """GATv2 without self loops, eval mode (``lean.gatv2``), for one window, all heads at once."""
        heads, width = self.heads, self.heads * self.channels
        both = h @ self.w + self.b
        x_l = both[:, :width]
        e = x_l.take(src, 0) + both[:, width:].take(dst, 0) + edge_attr @ self.edge_w
        logits = _leaky_relu(e, self.attention_slope) @ self.att  # [E, heads]
        dense = np.empty((heads, n * n), _F32)
        dense.fill(-np.inf)
        dense[:, pair] = logits.T
        dense = dense.reshape(heads, n, n)  # [head, dst, src]
        peak = np.maximum.reduce(dense, 2, keepdims=True)  # (ndarray.max, without its Python wrapper)
        np.maximum(peak, _F32_NO_PEAK, out=peak)  # a node without incoming edges: all weights 0, no message
        weights = np.exp(dense - peak)
        weights /= np.add.reduce(weights, 2, keepdims=True) + _F32_TINY
        out = (weights @ x_l.reshape(n, heads, self.channels).transpose(1, 0, 2)).transpose(1, 0, 2).reshape(n, width)
        if self.keep is not None:
            out = out.take(self.keep, 1)
        return out + self.bias


def _leaky_relu(values: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """``values`` through a leaky ReLU of ``slope``, a 0-d float32 array: the same products as
    with the Python float, which NumPy converts on every call (under callgrind, ``slope * h``
    on a window's [24, 64] float32 array: ~8,800 instructions with a float, ~6,100 with this)."""
    return np.maximum(values, slope * values)


def window_arrays(graphs: "GraphSet", with_vocab: bool = False) -> Iterator[tuple[np.ndarray, ...]]:
    """``(x, edge_index, edge_attr, u[, node_vocab])`` NumPy views of each window of a ``GraphSet``."""
    x, ei, ea, u = graphs.x.numpy(), graphs.edge_index.numpy(), graphs.edge_attr.numpy(), graphs.u.numpy()
    vocab = graphs.node_vocab.numpy()
    node_ptr, edge_ptr = graphs.node_ptr.numpy(), graphs.edge_ptr.numpy()
    for i in range(len(graphs)):
        n0, n1, e0, e1 = node_ptr[i], node_ptr[i + 1], edge_ptr[i], edge_ptr[i + 1]
        window = (x[n0:n1], ei[:, e0:e1] - n0, ea[e0:e1], u[i])
        yield (*window, vocab[n0:n1]) if with_vocab else window


def _np(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(_F32, copy=True)
