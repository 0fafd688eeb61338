"""Fixed sparse connectivity with two interchangeable spike-delivery paths.

A network of ``n_pre`` presynaptic and ``n_post`` postsynaptic neurons with
synapses (i → j, w_ij) delivers the spikes z_b ∈ {0, 1}^{n_pre} of every
trial b of a batch as

    out[b, j] += Σ_i z_bi W_ij        (j < n_post ≤ out.shape[1])

in one of two ways that compute the same sum:

- ``"dense"`` (the reference): one matrix product ``z @ W`` with the dense
  ``W [n_pre, n_post]`` — cost B·n_pre·n_post per step, whatever the activity;
- ``"event"``: only the rows of the neurons that spiked are touched, as in
  Brian2's and NEST's event-driven synapses.  The synapses are stored as a
  padded row-wise adjacency (ELLPACK): ``targets [n_pre, K]`` and
  ``weights [n_pre, K]`` with K the largest fan-out; a row with fewer
  synapses is padded with weight 0 (adding an exact 0 changes nothing).
  For the S (trial, neuron) pairs that spiked, the rows are gathered, offset
  by the trial's position in the flattened output, and added with one
  ``index_add_`` — cost S·K, i.e. spikes × fan-out, independent of N².

``delivery="auto"`` takes the event path when at most ``EVENT_DENSITY`` of
the n_pre·n_post possible synapses exist, the regime of the sparse random
networks of Brette et al. (2007); the dense matrix is then never built.
Padding costs S·(K − mean fan-out) extra additions: for binomial fan-outs
(random networks) K is close to the mean, for heavy-tailed ones it is not.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks

DELIVERY_MODES = ("auto", "event", "dense")
#: largest fraction of possible synapses for which "auto" delivers events
EVENT_DENSITY = 0.1


class SparseConnectivity(nn.Module):
    """Synapses ``pre → post`` with weights, delivering spikes by events or by a dense product."""

    def __init__(self, pre: torch.Tensor, post: torch.Tensor, weight: torch.Tensor,
                 n_pre: int, n_post: int, delivery: str = "auto") -> None:
        super().__init__()
        self.n_pre = _checks.positive_int("n_pre", n_pre)
        self.n_post = _checks.positive_int("n_post", n_post)
        pre, post, weight = _check_synapses(pre, post, weight, self.n_pre, self.n_post)
        self.n_synapses = int(pre.numel())
        #: largest number of synapses of one presynaptic neuron (the padded row width K)
        self.fan_out = int(torch.bincount(pre, minlength=self.n_pre).max())
        self.density = self.n_synapses / (self.n_pre * self.n_post)
        mode = _checks.choice("delivery", delivery, DELIVERY_MODES)
        if mode == "auto":
            mode = "event" if self.density <= EVENT_DENSITY else "dense"
        self.delivery = mode
        if mode == "event":
            targets, weights = padded_rows(pre, post, weight, self.n_pre)
            self.register_buffer("targets", targets)
            self.register_buffer("weights", weights)
            self.register_buffer("dense_weight", None)
        else:
            self.register_buffer("targets", None)
            self.register_buffer("weights", None)
            self.register_buffer("dense_weight", dense_matrix(pre, post, weight, self.n_pre, self.n_post))

    def deliver(self, out: torch.Tensor, spikes: torch.Tensor) -> None:
        """Add ``spikes [B, n_pre] @ W`` into the first ``n_post`` columns of ``out [B, M]`` in place.

        ``out`` must be contiguous (the event path adds into its flat storage)
        and have the synapses' dtype and device.
        """
        if self.delivery == "event":
            self._deliver_events(out, spikes)
        else:
            out[:, :self.n_post].addmm_(spikes.to(out.dtype), self.dense_weight)

    def _deliver_events(self, out: torch.Tensor, spikes: torch.Tensor) -> None:
        trial, neuron = spikes.nonzero(as_tuple=True)
        index = self.targets[neuron]
        if out.shape[0] > 1:
            # trial b's columns start at b · M in the flat storage
            index = index + (trial * out.shape[1]).unsqueeze(1)
        out.view(-1).index_add_(0, index.view(-1), self.weights[neuron].view(-1))

    def extra_repr(self) -> str:
        return (f"n_pre={self.n_pre}, n_post={self.n_post}, n_synapses={self.n_synapses}, "
                f"density={self.density:.4g}, delivery={self.delivery!r}")


def _check_synapses(pre: torch.Tensor, post: torch.Tensor, weight: torch.Tensor,
                    n_pre: int, n_post: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate synapse lists: integer indices in range, one finite weight per synapse, no duplicates."""
    for name, index, size in (("pre", pre, n_pre), ("post", post, n_post)):
        _checks.tensor(name, index, rank=1)
        if index.is_floating_point() or index.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor of neuron indices, got dtype {index.dtype}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
            raise ValueError(f"{name} indices must be in [0, {size - 1}], "
                             f"got range [{int(index.min())}, {int(index.max())}]")
    _checks.tensor("weight", weight, rank=1, shape=(pre.numel(),))
    if post.numel() != pre.numel():
        raise ValueError(f"pre and post must list the same number of synapses, got {pre.numel()} and {post.numel()}")
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got dtype {weight.dtype}")
    key = pre.long() * n_post + post.long()
    if key.unique().numel() != key.numel():
        raise ValueError("pre/post list a synapse twice; merge duplicates into one weight")
    return pre.long(), post.long(), weight


def padded_rows(pre: torch.Tensor, post: torch.Tensor, weight: torch.Tensor,
                n_pre: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ELLPACK rows: ``targets, weights [n_pre, K]``, K the largest fan-out, padded with (0, 0.0)."""
    order = torch.argsort(pre * (int(post.max()) + 1 if post.numel() else 1) + post)
    pre, post, weight = pre[order], post[order], weight[order]
    counts = torch.bincount(pre, minlength=n_pre)
    width = int(counts.max()) if pre.numel() else 0
    slot = torch.arange(pre.numel(), device=pre.device) - (torch.cumsum(counts, 0) - counts)[pre]
    targets = torch.zeros(n_pre, width, dtype=torch.long, device=pre.device)
    weights = torch.zeros(n_pre, width, dtype=weight.dtype, device=pre.device)
    targets[pre, slot] = post
    weights[pre, slot] = weight
    return targets, weights


def dense_matrix(pre: torch.Tensor, post: torch.Tensor, weight: torch.Tensor,
                 n_pre: int, n_post: int) -> torch.Tensor:
    """The dense weight matrix ``W [n_pre, n_post]`` (0 where there is no synapse)."""
    dense = torch.zeros(n_pre, n_post, dtype=weight.dtype, device=weight.device)
    dense[pre, post] = weight
    return dense
