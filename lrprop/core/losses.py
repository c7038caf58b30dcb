"""The LRProp objective: same-video KL (L_same), DTW position propagation (L_prop), soft-DTW.

Notation (METHOD.md §3): a *view* X of a video has frames i with embeddings z^X_i (the model's
L2-normalised output), projections h^X_i (the KL head's output) and original time stamps t^X_i.
For a pair of views X, Y:

    Q_ij  = softmax_j( cos(h^X_i, h^Y_j) / τ )                 over the valid frames j of Y
    L_same: P_ij ∝ exp(-(t^X_i - t^Y_j)² / (2σ²))              X, Y two views of one video
    L_prop: P_ij ∝ exp(-(π(i) - j)² / (2σ²)), π(i) = min{j : W_ij = 1}, W = DTW path of D
    SDTW  = soft-DTW_γ(D),  D_ij = ‖z^X_i - z^Y_j‖²
    L     = Σ_pairs δ_XY · L_same + (1 - δ_XY) · (β · L_prop + α · SDTW)

Each KL term is KL(P_i· ‖ Q_i·) averaged over the valid rows of both directions (X→Y and Y→X)
pooled together. W is held constant for the gradient.

Trap (TCC): positional encodings let a model "align" by counting frames. L_prop and SDTW reward
monotone alignments, and a frame counter is one, so test these losses on videos whose phases
move at different speeds, never only on uniformly paced ones.

Valid frames are a prefix of each view (the sampler pads at the end); the losses check this.
Shapes: views (B, V, T, E) for B videos with V views each; a pair batch (P, Tx, Ty).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from lrprop.core.dtw import dtw_alignment, pairwise_sqeuclidean, soft_dtw, soft_dtw_divergence

__all__ = [
    "similarity_log_probs",
    "gaussian_prior_log",
    "same_video_prior",
    "first_match_positions",
    "propagation_prior",
    "kl_rows",
    "same_video_kl",
    "time_contrastive_loss",
    "LRPropLoss",
    "LOSS_TERMS",
]

LOSS_TERMS = ("same", "prop", "sdtw")
_NEG = -1e9  # a finite "minus infinity" for masked logits, so 0 · (masked - masked) stays 0


def similarity_log_probs(hx: torch.Tensor, hy: torch.Tensor, y_mask: torch.Tensor, tau: float) -> torch.Tensor:
    """log Q_ij = log softmax_j(cos(h^X_i, h^Y_j) / τ) over the valid frames j of Y.

    Args:
        hx: (P, Tx, H), hy: (P, Ty, H) projections (need not be normalised).
        y_mask: (P, Ty) bool, True on valid frames of Y.
        tau: temperature τ.

    Returns:
        (P, Tx, Ty) log-probabilities; invalid columns hold a large negative number.
    """
    cos = F.normalize(hx, dim=-1) @ F.normalize(hy, dim=-1).transpose(-1, -2)
    logits = (cos / tau).masked_fill(~y_mask[:, None, :], _NEG)
    return logits.log_softmax(dim=-1)


def gaussian_prior_log(centers: torch.Tensor, positions: torch.Tensor, y_mask: torch.Tensor, sigma2: float) -> torch.Tensor:
    """log P_ij with P_ij ∝ exp(-(c_i - p_j)² / (2σ²)) over the valid j; every row sums to 1.

    Args:
        centers: (P, Tx) the centre c_i of row i.
        positions: (P, Ty) the position p_j of column j.
        y_mask: (P, Ty) bool valid columns.
        sigma2: the variance σ², in the units of the positions.

    Returns:
        (P, Tx, Ty) log-probabilities; invalid columns hold a large negative number.
    """
    diff = centers[:, :, None].to(torch.float32) - positions[:, None, :].to(torch.float32)
    logits = (-diff.square() / (2.0 * sigma2)).masked_fill(~y_mask[:, None, :], _NEG)
    return logits.log_softmax(dim=-1)


def same_video_prior(tx: torch.Tensor, ty: torch.Tensor, y_mask: torch.Tensor, sigma2: float) -> torch.Tensor:
    """log P for two views of one video: Gaussian in the original time stamps (Eq. 2).

    Args:
        tx: (P, Tx), ty: (P, Ty) original frame indices of each view's frames.
        y_mask: (P, Ty) bool.
        sigma2: σ² in frames.

    Returns:
        (P, Tx, Ty) log-probabilities.
    """
    return gaussian_prior_log(tx, ty, y_mask, sigma2)


def first_match_positions(alignment: torch.Tensor) -> torch.Tensor:
    """π(i) = the smallest j with W_ij = 1: position propagation through the DTW path.

    Args:
        alignment: (P, Tx, Ty) bool or 0/1 matrix W.

    Returns:
        (P, Tx) int64; rows with no 1 (padding rows) give 0.
    """
    # argmax returns the first maximal index, which is the tie rule the paper states.
    return alignment.to(torch.uint8).argmax(dim=-1)


def propagation_prior(
    alignment: torch.Tensor,
    y_mask: torch.Tensor,
    sigma2: float,
    y_timestamps: torch.Tensor | None = None,
) -> torch.Tensor:
    """log P of position propagation (Eqs. 5–8): Gaussian around π(i) over the frames of Y.

    With ``y_timestamps`` None the positions are the frame indices within the view Y
    (P_ij ∝ exp(-(π(i) - j)² / 2σ²)); otherwise the original time stamps of Y
    (P_ij ∝ exp(-(t^Y_π(i) - t^Y_j)² / 2σ²)).

    Args:
        alignment: (P, Tx, Ty) W of X against Y.
        y_mask: (P, Ty) bool.
        sigma2: σ².
        y_timestamps: optional (P, Ty) time stamps of Y.

    Returns:
        (P, Tx, Ty) log-probabilities.
    """
    pi = first_match_positions(alignment)  # (P, Tx)
    if y_timestamps is None:
        positions = torch.arange(alignment.shape[-1], device=alignment.device).expand(alignment.shape[0], -1)
        centers = pi
    else:
        positions = y_timestamps
        centers = torch.gather(y_timestamps, 1, pi)
    return gaussian_prior_log(centers, positions, y_mask, sigma2)


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
    """Σ over valid rows i of KL(P_i· ‖ Q_i·) = Σ_j P_ij (log P_ij - log Q_ij), valid j only.

    Args:
        log_p, log_q: (P, Tx, Ty).
        x_mask: (P, Tx), y_mask: (P, Ty) bool.

    Returns:
        (P,) the sum of the row divergences of each pair.
    """
    cell = log_p.exp() * (log_p - log_q)
    valid = x_mask[:, :, None] & y_mask[:, None, :]
    return torch.where(valid, cell, torch.zeros_like(cell)).sum(dim=(-1, -2))


def same_video_kl(
    hx: torch.Tensor,
    hy: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    x_mask: torch.Tensor,
    y_mask: torch.Tensor,
    *,
    tau: float,
    sigma2: float,
) -> torch.Tensor:
    """L_same of each pair (Eqs. 2–4): KL(P_i· ‖ Q_i·) with the Gaussian time-stamp prior,
    averaged over the valid rows of both directions (X→Y and Y→X) pooled together.

    Args:
        hx: (P, Tx, H), hy: (P, Ty, H) projections; tx, ty: their time stamps.
        x_mask: (P, Tx), y_mask: (P, Ty) bool valid frames.

    Returns:
        (P,) the term of each pair.
    """
    kl_xy = kl_rows(same_video_prior(tx, ty, y_mask, sigma2), similarity_log_probs(hx, hy, y_mask, tau), x_mask, y_mask)
    kl_yx = kl_rows(same_video_prior(ty, tx, x_mask, sigma2), similarity_log_probs(hy, hx, x_mask, tau), y_mask, x_mask)
    return (kl_xy + kl_yx) / (x_mask.sum(-1) + y_mask.sum(-1))


def time_contrastive_loss(
    h_anchor: torch.Tensor,
    h_positive: torch.Tensor,
    t_anchor: torch.Tensor,
    t_positive: torch.Tensor,
    *,
    tau: float,
    sigma2: float,
) -> torch.Tensor:
    """L_same on single frames: the backbone pretraining's objective (:mod:`lrprop.training.pretrain`).

    For each video v, M anchor frames and M positive frames (each near its anchor in time,
    augmented on its own) are compared only with frames of the same video, as the two views of
    :func:`same_video_kl`:

        Q_ij = softmax_j( cos(a_i, p_j) / τ ),  P_ij ∝ exp(-(t^a_i - t^p_j)² / (2σ²))
        loss = mean over videos and rows of KL(P_i· ‖ Q_i·), both directions (anchors → positives and back)

    Negatives come from the same video only, on purpose: frames of one video share their
    background, colours and framing, so only what changes within the video (the action) tells
    them apart; negatives from other videos would reward recognising the video instead.

    Args:
        h_anchor, h_positive: (V, M, P) projections (normalised here).
        t_anchor, t_positive: (V, M) frame indices.
        tau: temperature; sigma2: the prior's variance σ² in frames.

    Returns:
        a scalar.
    """
    mask = torch.ones(h_anchor.shape[:2], dtype=torch.bool, device=h_anchor.device)
    return same_video_kl(h_anchor, h_positive, t_anchor, t_positive, mask, mask, tau=tau, sigma2=sigma2).mean()


def cycle_back_loss(h: torch.Tensor, progress: torch.Tensor, *, tau: float, variance_weight: float = 0.001) -> torch.Tensor:
    """Cycle-back regression across videos (TCC, Dwibedi et al. 2019, Eq. 6 with variance).

    For every ordered pair of videos (u, v) and every frame i of u: its soft nearest neighbour
    in v, ṽ = Σ_j α_j h^v_j with α = softmax_j(cos(h^u_i, h^v_j) / τ); then ṽ's soft match back
    in u, β = softmax_k(cos(ṽ, h^u_k) / τ), whose mean μ and variance σ² of the frames'
    progress p^u_k are compared with p^u_i:

        loss = mean over pairs and frames of (p^u_i - μ)² / σ² + λ log σ

    The progress (a frame's place in its video, in [0, 1]) is only a target here, never an
    input: a per-frame encoder cannot read it, so the loss is lowest when each frame's features
    find the frame of another video that shows the same moment and that one finds it back.
    This is the cross-video signal the within-video time contrast lacks.

    Args:
        h: (V, M, P) per-frame projections of V videos (normalised here).
        progress: (V, M) each frame's progress in its video.
        tau: temperature of the similarities.
        variance_weight: λ.

    Returns:
        a scalar; 0 with fewer than 2 videos.
    """
    V = h.shape[0]
    if V < 2:
        return h.sum() * 0.0
    h = F.normalize(h, dim=-1)
    u = torch.arange(V, device=h.device).repeat_interleave(V - 1)
    v = torch.tensor([w for a in range(V) for w in range(V) if w != a], device=h.device)
    alpha = torch.softmax(h[u] @ h[v].transpose(1, 2) / tau, dim=-1)  # (pairs, M, M)
    soft = F.normalize(alpha @ h[v], dim=-1)  # (pairs, M, P): each frame's soft neighbour in v
    beta = torch.softmax(soft @ h[u].transpose(1, 2) / tau, dim=-1)  # (pairs, M, M)
    p = progress[u].to(h.dtype)  # (pairs, M)
    mu = (beta * p[:, None, :]).sum(-1)
    var = (beta * (p[:, None, :] - mu[..., None]) ** 2).sum(-1).clamp_min(1e-6)
    return ((p - mu) ** 2 / var + variance_weight * 0.5 * var.log()).mean()


def _check_prefix_mask(mask: torch.Tensor) -> torch.Tensor:
    """Valid lengths (N,) of a (N, T) mask, which must be True on a prefix and hold ≥ 1 frame."""
    lengths = mask.sum(-1)
    prefix = torch.arange(mask.shape[-1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(prefix, mask) or bool((lengths < 1).any()):
        raise ValueError("view masks must be True on a non-empty prefix (padding at the end)")
    return lengths


class LRPropLoss(nn.Module):
    """The Eq. 12 objective over all pairs of views in a step, as a dict of named terms.

    Args:
        alpha: weight α of the soft-DTW term.
        beta: weight β of the propagation term.
        tau: temperature τ of Q.
        sigma2: variance σ² of both Gaussian priors, in frames.
        gamma: soft-DTW smoothing γ.
        terms: which of ``("same", "prop", "sdtw")`` enter the objective; ``("same",)`` is the
            SCL baseline, the paper's Table 3 ablations are the other subsets.
        cost: ``"sqeuclidean"`` D_ij = ‖z_i - z_j‖², or ``"l2"`` its square root.
        prop_positions: ``"view"`` (π and j as indices within the view) or ``"timestamps"``.
        sdtw_normalize: divide each soft-DTW value by Tx + Ty (valid lengths).
        sdtw_divergence: use the soft-DTW divergence instead of soft-DTW.

    Returns of ``forward``: ``{"total": ..., "same": ..., "prop": ..., "sdtw": ...}``, the
    unweighted term sums over pairs and the weighted total; only the enabled terms appear.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.001,
        beta: float = 0.8,
        tau: float = 0.1,
        sigma2: float = 10.0,
        gamma: float = 0.1,
        terms: Sequence[str] = LOSS_TERMS,
        cost: str = "sqeuclidean",
        prop_positions: str = "view",
        sdtw_normalize: bool = False,
        sdtw_divergence: bool = False,
    ) -> None:
        super().__init__()
        unknown = set(terms) - set(LOSS_TERMS)
        if unknown or not terms:
            raise ValueError(f"terms must be a non-empty subset of {LOSS_TERMS}, got {tuple(terms)}")
        if cost not in ("sqeuclidean", "l2"):
            raise ValueError(f"cost must be 'sqeuclidean' or 'l2', got {cost!r}")
        if prop_positions not in ("view", "timestamps"):
            raise ValueError(f"prop_positions must be 'view' or 'timestamps', got {prop_positions!r}")
        if sdtw_divergence and cost != "sqeuclidean":
            raise ValueError("sdtw_divergence is defined on the squared Euclidean cost only")
        self.alpha, self.beta, self.tau, self.sigma2, self.gamma = alpha, beta, tau, sigma2, gamma
        self.terms = tuple(terms)
        self.cost, self.prop_positions = cost, prop_positions
        self.sdtw_normalize, self.sdtw_divergence = sdtw_normalize, sdtw_divergence

    def pair_cost(self, zx: torch.Tensor, zy: torch.Tensor) -> torch.Tensor:
        """D (P, Tx, Ty) on L2-normalised embeddings zx (P, Tx, E), zy (P, Ty, E)."""
        d = pairwise_sqeuclidean(F.normalize(zx, dim=-1), F.normalize(zy, dim=-1))
        # The eps keeps the gradient of sqrt finite where two frames coincide.
        return d if self.cost == "sqeuclidean" else (d + 1e-12).sqrt()

    def same_term(self, h, t, mask, ix, iy) -> torch.Tensor:
        """Σ over pairs (ix, iy) of views of one video of the pooled two-direction KL mean."""
        return same_video_kl(h[ix], h[iy], t[ix], t[iy], mask[ix], mask[iy], tau=self.tau, sigma2=self.sigma2).sum()

    def prop_term(self, h, t, mask, cost, ix, iy, lengths) -> torch.Tensor:
        """Σ over pairs of different videos of the pooled two-direction propagation KL mean."""
        hx, hy, mx, my = h[ix], h[iy], mask[ix], mask[iy]
        W = dtw_alignment(cost.detach(), lengths[ix], lengths[iy])  # (P, Tx, Ty), constant
        by_time = self.prop_positions == "timestamps"
        log_p_xy = propagation_prior(W, my, self.sigma2, t[iy] if by_time else None)
        log_p_yx = propagation_prior(W.transpose(-1, -2), mx, self.sigma2, t[ix] if by_time else None)
        kl_xy = kl_rows(log_p_xy, similarity_log_probs(hx, hy, my, self.tau), mx, my)
        kl_yx = kl_rows(log_p_yx, similarity_log_probs(hy, hx, mx, self.tau), my, mx)
        return ((kl_xy + kl_yx) / (mx.sum(-1) + my.sum(-1))).sum()

    def sdtw_term(self, z, cost, ix, iy, lengths) -> torch.Tensor:
        """Σ over pairs of different videos of soft-DTW (or its divergence)."""
        if self.sdtw_divergence:
            zn = F.normalize(z, dim=-1)
            values = soft_dtw_divergence(zn[ix], zn[iy], self.gamma, lengths[ix], lengths[iy], self.sdtw_normalize)
        else:
            values = soft_dtw(cost, self.gamma, lengths[ix], lengths[iy], self.sdtw_normalize)
        return values.sum()

    def forward(
        self,
        embeddings: torch.Tensor,
        projections: torch.Tensor,
        mask: torch.Tensor,
        timestamps: torch.Tensor,
        path_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The objective of one step.

        Args:
            embeddings: (B, V, T, E) embeddings z of V views of each of B videos.
            projections: (B, V, T, H) projections h.
            mask: (B, V, T) bool, True on valid frames (a prefix of each view).
            timestamps: (B, V, T) original frame indices of every view's frames.
            path_features: optional (B, V, T, F) per-frame features on whose cost L_prop's DTW
                path W is found instead of the embeddings' (e.g. the backbone's, before the
                positions: a path a frame counter cannot produce). Soft-DTW stays on z.

        Returns:
            dict of scalar tensors: "total" and each enabled term's unweighted sum over pairs.
        """
        B, V, T, _ = embeddings.shape
        # At least float32 (bf16 embeddings from autocast are too coarse for the KL terms);
        # float64 stays float64, so the whole loss can be checked in double precision.
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        z = embeddings.reshape(B * V, T, -1).to(dtype)
        h = projections.reshape(B * V, T, -1).to(dtype)
        m = mask.reshape(B * V, T).bool()
        t = timestamps.reshape(B * V, T)
        lengths = _check_prefix_mask(m)
        views = [(b, v) for b in range(B) for v in range(V)]
        same = [(b1 * V + v1, b2 * V + v2) for (b1, v1), (b2, v2) in combinations(views, 2) if b1 == b2]
        diff = [(b1 * V + v1, b2 * V + v2) for (b1, v1), (b2, v2) in combinations(views, 2) if b1 != b2]

        out: dict[str, torch.Tensor] = {}
        total = z.new_zeros(())
        if "same" in self.terms and same:
            ix, iy = (torch.tensor(c, device=z.device) for c in zip(*same))
            out["same"] = self.same_term(h, t, m, ix, iy)
            total = total + out["same"]
        if diff and ("prop" in self.terms or "sdtw" in self.terms):
            ix, iy = (torch.tensor(c, device=z.device) for c in zip(*diff))
            cost = self.pair_cost(z[ix], z[iy])
            if "prop" in self.terms:
                if path_features is None:
                    path_cost = cost
                else:
                    f = path_features.reshape(B * V, T, -1).to(dtype)
                    path_cost = self.pair_cost(f[ix], f[iy])
                out["prop"] = self.prop_term(h, t, m, path_cost, ix, iy, lengths)
                total = total + self.beta * out["prop"]
            if "sdtw" in self.terms:
                out["sdtw"] = self.sdtw_term(z, cost, ix, iy, lengths)
                total = total + self.alpha * out["sdtw"]
        out["total"] = total
        return out
