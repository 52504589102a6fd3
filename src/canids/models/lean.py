"""GATv2 attention and graph pooling with the fewest tensor operations, for inference and training.

A student detector classifies one window in well under a millisecond only if it runs a
few dozen tensor operations; PyG's ``MessagePassing`` machinery (argument inspection,
collect/aggregate dispatch) costs more per call than the arithmetic of a 40-node window (and a
few per cent of a training step). These functions compute exactly what ``GATv2Conv``
and PyG's global pools compute (tests hold them to it), from the same parameters, with plain
indexed torch operations; without gradients (inference) they run the same operations as
before, to the bit. In training they compute PyG's values and gradients to float rounding,
two ways cheaper: the source rows are gathered once, for the attention logits and the
messages (PyG gathers them twice, so the backward pass scattered them back twice), and the
edge projection takes its weight gradient in the fast layout (``linear``). The softmax peak
is detached as PyG detaches it; attention dropout (``GATv2Conv.dropout``, 0 in this project's
models) is applied as PyG applies it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATv2Conv


def gatv2_layer(in_channels: int, channels: int, heads: int, edge_dim: int) -> GATv2Conv:
    """A ``GATv2Conv`` without self loops, as both models hold it: the parameters ``gatv2`` computes with.

    PyG renders each ``MessagePassing`` class's ``propagate`` and ``edge_updater`` into temporary
    ``.py`` files the first time a process builds one, imports them and never deletes them
    (``torch_geometric.template``): every training job and test process left two in the temporary
    directory, hundreds on a machine that runs the test suite. This project never calls them
    (``gatv2`` computes the layer), so the files go once imported; the modules stay loaded, and later
    layers of the class reuse them without writing again.
    """
    conv = GATv2Conv(in_channels, channels, heads=heads, edge_dim=edge_dim, add_self_loops=False)
    _remove_generated_sources(type(conv))
    return conv


def _remove_generated_sources(cls: type) -> None:
    """Delete the temporary source files of ``cls``'s generated ``propagate``/``edge_updater`` modules."""
    temp_dir = os.path.realpath(tempfile.gettempdir())
    for suffix in ("propagate", "edge_updater"):
        name = f"{cls.__module__}_{cls.__name__}_{suffix}"
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and os.path.basename(path).startswith(name) and os.path.dirname(os.path.realpath(path)) == temp_dir:
            with contextlib.suppress(OSError):
                os.unlink(path)


def gatv2(conv: GATv2Conv, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None, training: bool = False) -> Tensor:
    """``conv(x, edge_index, edge_attr)`` of a ``GATv2Conv`` without self loops (``training``: with its attention dropout)."""
    heads, channels = conv.heads, conv.out_channels
    src, dst = edge_index[0], edge_index[1]
    n = x.shape[0]
    x_l = conv.lin_l(x).view(n, heads, channels)
    x_r = x_l if conv.share_weights else conv.lin_r(x).view(n, heads, channels)
    x_j = x_l.index_select(0, src)
    e = x_j + x_r.index_select(0, dst)
    if edge_attr is not None and conv.lin_edge is not None:
        e = e + linear(edge_attr, conv.lin_edge.weight, conv.lin_edge.bias).view(-1, heads, channels)
    logits = (F.leaky_relu(e, conv.negative_slope) * conv.att).sum(-1)
    alpha = segment_softmax(logits, dst, n)
    if training and conv.dropout > 0:
        alpha = F.dropout(alpha, conv.dropout, training=True)
    # The messages reuse the gathered source rows (PyG's propagate gathers them again: one more
    # gather, and one more scatter of E x width rows in the backward pass).
    out = x.new_zeros(n, heads, channels).index_add_(0, dst, x_j * alpha.unsqueeze(-1))
    out = out.reshape(n, heads * channels) if conv.concat else out.mean(1)
    if conv.res is not None:
        out = out + conv.res(x)
    if conv.bias is not None:
        out = out + conv.bias
    return out


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``; with gradients, for a layer that widens (fewer inputs than outputs), the
    weight's gradient taken as ``x.T @ grad`` rather than ``(grad.T @ x).T``.

    Autograd gives a weight gradient the layout of the weight as the product saw it (``weight.t()``),
    so for ``F.linear`` it computes ``grad.T @ x``: an output of ``out x in`` summed over every row.
    For 4 or 10 inputs (the edge projection, the input layer) MKL runs that product ~5-8x slower
    than ``x.T @ grad`` over the same rows (1.9 vs 0.24 ms for 12,900 edges, 4 -> 128, one thread).
    Multiplying by a contiguous copy of ``weight.t()`` makes autograd take the fast form; the values
    are the same to float rounding. Without gradients (inference) it is ``F.linear`` itself.
    """
    if torch.is_grad_enabled() and weight.requires_grad and x.dim() == 2 and weight.shape[1] < weight.shape[0]:
        w = weight.t().contiguous()
        return x @ w if bias is None else torch.addmm(bias, x, w)
    return F.linear(x, weight, bias)


def attend(conv: GATv2Conv, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None, training: bool) -> Tensor:
    """One GATv2 layer (``gatv2``), attention dropout while ``training``."""
    return gatv2(conv, x, edge_index, edge_attr, training)


def segment_softmax(logits: Tensor, index: Tensor, size: int) -> Tensor:
    """Softmax of ``logits`` [E, H] over the entries that share an ``index`` (PyG's ``softmax``).

    The peak is taken from detached logits, as PyG takes it: the softmax does not depend on the
    shift, so no gradient flows through it (nor is one computed).
    """
    expanded = index.unsqueeze(-1).expand_as(logits)
    peak = logits.new_full((size, logits.shape[1]), float("-inf")).scatter_reduce_(0, expanded, logits.detach(), "amax", include_self=True)
    weights = (logits - peak.index_select(0, index)).exp()
    total = logits.new_zeros(size, logits.shape[1]).index_add_(0, index, weights)
    return weights / (total.index_select(0, index) + 1e-16)


def mean_pool(x: Tensor, batch: Tensor, size: int) -> Tensor:
    """Per-graph mean of node rows (PyG's ``global_mean_pool``)."""
    if size == 1:  # one window (streaming detection): a plain mean, 1 op instead of 8
        return x.mean(0, keepdim=True)
    total = x.new_zeros(size, x.shape[1]).index_add_(0, batch, x)
    count = x.new_zeros(size).index_add_(0, batch, x.new_ones(x.shape[0])).clamp_min(1.0)
    return total / count.unsqueeze(-1)


def max_pool(x: Tensor, batch: Tensor, size: int) -> Tensor:
    """Per-graph max of node rows (PyG's ``global_max_pool``); with gradients, through ``_MaxPool``."""
    if size == 1:
        return x.amax(0, keepdim=True)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPool.apply(x, batch, size)
    return _scatter_max(x, batch, size)


def _scatter_max(x: Tensor, batch: Tensor, size: int) -> Tensor:
    expanded = batch.unsqueeze(-1).expand_as(x)
    return x.new_full((size, x.shape[1]), float("-inf")).scatter_reduce_(0, expanded, x, "amax", include_self=True)


class _MaxPool(torch.autograd.Function):
    """``_scatter_max`` with autograd's own gradient (each maximum's gradient shared equally by the rows
    that tie for it), bit for bit, in fewer passes over the node rows.

    ``scatter_reduce``'s backward also compares the initial ``-inf`` rows, converts both comparisons
    to floats separately and gathers through expanded indices: about a tenth of a GAT training
    step (7,600 x 256 jumping-knowledge rows per 256-window batch). Here: one comparison, one
    conversion, the tie counts with ``index_add_``, one gather of ``grad / count``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, batch: Tensor, size: int) -> Tensor:  # type: ignore[override]
        out = _scatter_max(x, batch, size)
        ctx.save_for_backward(x, batch, out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, batch, out = ctx.saved_tensors
        hit = (x == out.index_select(0, batch)).to(grad.dtype)
        count = grad.new_zeros(out.shape).index_add_(0, batch, hit)  # rows tied for each maximum (>= 1)
        return hit.mul_((grad / count).index_select(0, batch)), None, None
