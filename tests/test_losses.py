"""lrprop.core.losses against definition-level float64 references built on tslearn and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import log_softmax as np_log_softmax
from scipy.stats import entropy
from tslearn.metrics import dtw_path_from_metric
from tslearn.metrics import soft_dtw as ts_soft_dtw

from lrprop.core import losses
from lrprop.core.dtw import dtw_alignment

TAU, SIGMA2, GAMMA = 0.1, 10.0, 0.1


def _normalize(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _q(hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    """Q_ij = softmax_j(cos(h_i, h_j) / τ) on valid frames only (arrays hold only valid ones)."""
    return np.exp(np.apply_along_axis(np_log_softmax, 1, _normalize(hx) @ _normalize(hy).T / TAU))


def _gauss(centers: np.ndarray, positions: np.ndarray, sigma2: float = SIGMA2) -> np.ndarray:
    p = np.exp(-((centers[:, None] - positions[None, :]) ** 2) / (2 * sigma2))
    return p / p.sum(1, keepdims=True)


def _kl_sum(P: np.ndarray, Q: np.ndarray) -> float:
    return float(sum(entropy(P[i], Q[i]) for i in range(len(P))))


def _ref_same(hx, hy, tx, ty) -> float:
    kl = _kl_sum(_gauss(tx, ty), _q(hx, hy)) + _kl_sum(_gauss(ty, tx), _q(hy, hx))
    return kl / (len(hx) + len(hy))


def _ref_prop(zx, zy, hx, hy) -> float:
    D = cdist(_normalize(zx), _normalize(zy), "sqeuclidean")
    path, _ = dtw_path_from_metric(D, metric="precomputed")
    W = np.zeros(D.shape, dtype=bool)
    for i, j in path:
        W[i, j] = True
    pi_x = np.array([np.flatnonzero(W[i])[0] for i in range(len(zx))])
    pi_y = np.array([np.flatnonzero(W[:, j])[0] for j in range(len(zy))])
    kl = _kl_sum(_gauss(pi_x, np.arange(len(zy))), _q(hx, hy)) + _kl_sum(_gauss(pi_y, np.arange(len(zx))), _q(hy, hx))
    return kl / (len(zx) + len(zy))


def _ref_sdtw(zx, zy) -> float:
    return float(ts_soft_dtw(_normalize(zx), _normalize(zy), gamma=GAMMA))


def _random_step(seed: int, B: int = 2, V: int = 2, T: int = 12, E: int = 6):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(B, V, T, E))
    h = rng.normal(size=(B, V, T, E))
    lengths = rng.integers(4, T + 1, (B, V))
    mask = np.arange(T)[None, None, :] < lengths[..., None]
    stamps = np.sort(rng.choice(60, size=(B, V, T)), axis=-1)
    return z, h, mask, stamps, lengths


def test_similarity_and_priors_are_distributions_over_valid_columns():
    rng = np.random.default_rng(0)
    hx, hy = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 7, 4, dtype=torch.float64)
    y_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    log_q = losses.similarity_log_probs(hx, hy, y_mask, TAU)
    q = log_q.exp()
    torch.testing.assert_close(q.sum(-1), torch.ones(2, 5, dtype=q.dtype))
    assert q[1, :, 4:].max() < 1e-30
    np.testing.assert_allclose(q[1, :, :4].numpy(), _q(hx[1].numpy(), hy[1, :4].numpy()), rtol=1e-9)

    centers = torch.tensor(rng.uniform(0, 6, (2, 5)))
    log_p = losses.gaussian_prior_log(centers, torch.arange(7.0).expand(2, 7), y_mask, SIGMA2)
    p = log_p.exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 5, dtype=p.dtype))
    np.testing.assert_allclose(p[1, :, :4].numpy(), _gauss(centers[1].numpy(), np.arange(4.0)), rtol=1e-5)
    # The peak sits at the valid position nearest to the centre.
    nearest = np.abs(centers[0].numpy()[:, None] - np.arange(7)[None]).argmin(1)
    assert p[0].argmax(-1).tolist() == nearest.tolist()


def test_first_match_takes_the_smallest_index_on_ties():
    W = torch.zeros(1, 4, 5, dtype=torch.bool)
    W[0, 0, 0] = True
    W[0, 1, [1, 2, 3]] = True  # a horizontal run: π(1) must be 1
    W[0, 2, 3] = True
    W[0, 3, [3, 4]] = True
    assert losses.first_match_positions(W).tolist() == [[0, 1, 3, 3]]


def test_propagation_prior_peaks_at_pi_in_view_or_time_stamps():
    W = torch.zeros(1, 3, 6, dtype=torch.bool)
    W[0, 0, [0, 1]] = True
    W[0, 1, [2, 3, 4]] = True
    W[0, 2, 5] = True
    y_mask = torch.ones(1, 6, dtype=torch.bool)
    p = losses.propagation_prior(W, y_mask, 1.0).exp()
    assert p[0].argmax(-1).tolist() == [0, 2, 5]
    stamps = torch.tensor([[0, 3, 9, 12, 20, 31]])
    p_t = losses.propagation_prior(W, y_mask, 1.0, stamps).exp()
    # Row 1: π = 2, so the centre is the time stamp of frame 2 of Y, 9.
    np.testing.assert_allclose(
        p_t[0, 1].numpy(), _gauss(np.array([9.0]), stamps[0].numpy().astype(float), 1.0)[0], rtol=1e-5, atol=1e-12
    )


def test_kl_rows_equals_scipy_entropy():
    rng = np.random.default_rng(4)
    P = rng.dirichlet(np.ones(6), size=(2, 5))
    Q = rng.dirichlet(np.ones(6), size=(2, 5))
    x_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    y_mask = torch.ones(2, 6, dtype=torch.bool)
    got = losses.kl_rows(torch.tensor(np.log(P)), torch.tensor(np.log(Q)), x_mask, y_mask)
    want = [_kl_sum(P[0], Q[0]), _kl_sum(P[1, :3], Q[1, :3])]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_loss_terms_equal_the_reference(seed):
    z, h, mask, stamps, lengths = _random_step(seed)
    loss = losses.LRPropLoss(alpha=0.01, beta=0.4, tau=TAU, sigma2=SIGMA2, gamma=GAMMA)
    out = loss(torch.tensor(z), torch.tensor(h), torch.tensor(mask), torch.tensor(stamps))

    def view(b, v):
        n = lengths[b, v]
        return z[b, v, :n], h[b, v, :n], stamps[b, v, :n].astype(float)

    same = prop = sdtw = 0.0
    views = [(b, v) for b in range(2) for v in range(2)]
    for k, (b1, v1) in enumerate(views):
        for b2, v2 in views[k + 1 :]:
            zx, hx, tx = view(b1, v1)
            zy, hy, ty = view(b2, v2)
            if b1 == b2:
                same += _ref_same(hx, hy, tx, ty)
            else:
                prop += _ref_prop(zx, zy, hx, hy)
                sdtw += _ref_sdtw(zx, zy)
    assert out["same"].item() == pytest.approx(same, rel=1e-4)
    assert out["prop"].item() == pytest.approx(prop, rel=1e-4)
    assert out["sdtw"].item() == pytest.approx(sdtw, rel=1e-4)
    assert out["total"].item() == pytest.approx(same + 0.4 * prop + 0.01 * sdtw, rel=1e-4)


def test_padding_changes_neither_values_nor_gradients():
    z, h, mask, stamps, _ = _random_step(7, T=10)
    rng = np.random.default_rng(0)
    pad = 5
    zp = np.concatenate([z, rng.normal(size=z.shape[:2] + (pad, z.shape[-1])) * 50], axis=2)
    hp = np.concatenate([h, rng.normal(size=h.shape[:2] + (pad, h.shape[-1])) * 50], axis=2)
    mp = np.concatenate([mask, np.zeros(mask.shape[:2] + (pad,), bool)], axis=2)
    sp = np.concatenate([stamps, np.full(stamps.shape[:2] + (pad,), 999)], axis=2)
    loss = losses.LRPropLoss(alpha=0.01, beta=0.4)

    def run(z_, h_, m_, s_):
        zt, ht = torch.tensor(z_, requires_grad=True), torch.tensor(h_, requires_grad=True)
        out = loss(zt, ht, torch.tensor(m_), torch.tensor(s_))
        out["total"].backward()
        return out, zt.grad, ht.grad

    a, gza, gha = run(z, h, mask, stamps)
    b, gzb, ghb = run(zp, hp, mp, sp)
    for key in ("same", "prop", "sdtw", "total"):
        assert b[key].item() == pytest.approx(a[key].item(), rel=1e-5)
    torch.testing.assert_close(gzb[:, :, :10], gza, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ghb[:, :, :10], gha, rtol=1e-4, atol=1e-6)
    assert gzb[:, :, 10:].abs().max() == 0 and ghb[:, :, 10:].abs().max() == 0


def test_ablation_terms_and_option_validation():
    z, h, mask, stamps, _ = _random_step(1)
    args = (torch.tensor(z), torch.tensor(h), torch.tensor(mask), torch.tensor(stamps))
    scl = losses.LRPropLoss(terms=("same",))(*args)
    assert set(scl) == {"same", "total"} and scl["total"] == scl["same"]
    no_same = losses.LRPropLoss(terms=("prop", "sdtw"), alpha=0.5, beta=2.0)(*args)
    assert no_same["total"].item() == pytest.approx(2.0 * no_same["prop"].item() + 0.5 * no_same["sdtw"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="terms"):
        losses.LRPropLoss(terms=("same", "bogus"))
    with pytest.raises(ValueError, match="cost"):
        losses.LRPropLoss(cost="cosine")
    with pytest.raises(ValueError, match="prefix"):
        bad = torch.tensor(mask).clone()
        bad[0, 0, 0] = False
        losses.LRPropLoss()(args[0], args[1], bad, args[3])


def test_w_is_a_constant_of_the_gradient():
    """The gradient of L_prop equals that of the same KL with W computed beforehand and frozen."""
    z, h, mask, stamps, _ = _random_step(5, T=8)
    mask[:] = True
    loss = losses.LRPropLoss(terms=("prop",), beta=1.0)
    zt, ht = torch.tensor(z, requires_grad=True), torch.tensor(h, requires_grad=True)
    loss(zt, ht, torch.tensor(mask), torch.tensor(stamps))["total"].backward()
    # With W frozen, L_prop depends on z only through W, so z receives no gradient at all.
    assert zt.grad is None or zt.grad.abs().max() == 0
    assert ht.grad.abs().max() > 0


def test_the_alignment_is_found_on_a_cost_cut_from_the_graph(monkeypatch):
    """L_prop hands its DTW the cost detached. The test above cannot see that: W is a bool and
    π an argmax, so no gradient could pass through them either way. What a missing ``.detach()``
    changes is what the DTW receives (a cost still in the graph, which a GPU kernel or a
    differentiable alignment put in its place would use as such): the DTW is watched here."""
    given = []

    def watched(cost, x_lengths=None, y_lengths=None):
        given.append((cost.requires_grad, cost.grad_fn))
        return dtw_alignment(cost, x_lengths, y_lengths)

    monkeypatch.setattr(losses, "dtw_alignment", watched)
    z, h, mask, stamps, _ = _random_step(5, T=8)
    zt, ht = torch.tensor(z, requires_grad=True), torch.tensor(h, requires_grad=True)
    losses.LRPropLoss(terms=("prop",), beta=1.0)(zt, ht, torch.tensor(mask), torch.tensor(stamps))["total"].backward()
    assert given and all(g == (False, None) for g in given)
    assert ht.grad.abs().max() > 0  # the KL itself still trains h


def test_propagation_follows_content_not_frame_index():
    """TCC's trap: with phases at different speeds, π must match phases, not frame counts.

    Two sequences pass through the same 3 phases at different speeds. Content embeddings (one
    direction per phase) make the DTW path map every frame to a frame of the same phase; a
    frame-index embedding (position only) maps many frames across phase boundaries.
    """
    labels_x = np.repeat([0, 1, 2], [3, 12, 5])
    labels_y = np.repeat([0, 1, 2], [10, 3, 7])
    basis = np.eye(3)
    content_x, content_y = basis[labels_x], basis[labels_y]
    loss = losses.LRPropLoss(terms=("prop",))
    for zx, zy, expect_perfect in [
        (content_x, content_y, True),
        (
            np.stack([np.cos(np.linspace(0, 1, 20)), np.sin(np.linspace(0, 1, 20))], 1),
            np.stack([np.cos(np.linspace(0, 1, 20)), np.sin(np.linspace(0, 1, 20))], 1),
            False,
        ),
    ]:
        cost = loss.pair_cost(torch.tensor(zx)[None], torch.tensor(zy)[None])
        pi = losses.first_match_positions(dtw_alignment(cost))[0].numpy()
        agree = (labels_y[pi] == labels_x).mean()
        assert (agree == 1.0) == expect_perfect, agree


def test_whole_objective_passes_gradcheck_in_float64():
    """Gradients of Eq. 12 w.r.t. embeddings and projections (W fixed by the small eps)."""
    z, h, mask, stamps, _ = _random_step(9, T=6, E=3)
    loss = losses.LRPropLoss(alpha=0.05, beta=0.4, gamma=0.5)
    m, s = torch.tensor(mask), torch.tensor(stamps)
    zt, ht = torch.tensor(z, requires_grad=True), torch.tensor(h, requires_grad=True)
    assert loss(zt, ht, m, s)["total"].dtype == torch.float64
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, m, s)["total"], (zt, ht), eps=1e-6, atol=1e-6)


def test_prop_path_on_other_features_equals_the_reference_on_them():
    """With ``path_features`` the DTW path W of L_prop comes from their cost (tslearn's path on
    it), Q still from the projections; soft-DTW stays on the embeddings."""
    z, h, mask, stamps, lengths = _random_step(3)
    f = np.random.default_rng(4).normal(size=z.shape[:-1] + (5,))
    loss = losses.LRPropLoss(alpha=0.01, beta=0.4, tau=TAU, sigma2=SIGMA2, gamma=GAMMA)
    out = loss(torch.tensor(z), torch.tensor(h), torch.tensor(mask), torch.tensor(stamps), torch.tensor(f))
    prop = sdtw = 0.0
    for b1, b2 in ((0, 1),):
        for v1 in range(2):
            for v2 in range(2):
                n1, n2 = lengths[b1, v1], lengths[b2, v2]
                prop += _ref_prop(f[b1, v1, :n1], f[b2, v2, :n2], h[b1, v1, :n1], h[b2, v2, :n2])
                sdtw += _ref_sdtw(z[b1, v1, :n1], z[b2, v2, :n2])
    assert out["prop"].item() == pytest.approx(prop, rel=1e-4)
    assert out["sdtw"].item() == pytest.approx(sdtw, rel=1e-4)
    plain = loss(torch.tensor(z), torch.tensor(h), torch.tensor(mask), torch.tensor(stamps))
    assert out["prop"].item() != pytest.approx(plain["prop"].item(), rel=1e-3)  # the path did move


# ----------------------------------------------------------------------------- cycle-back (TCC)


def _cycle_back_reference(h: np.ndarray, progress: np.ndarray, tau: float, lam: float) -> float:
    """Loops in float64, written from TCC's Eq. 6 with variance, pair by pair, frame by frame."""
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
    V, M, _ = h.shape
    total, count = 0.0, 0
    for a in range(V):
        for b in range(V):
            if a == b:
                continue
            for i in range(M):
                alpha = np.exp(np.log(np.exp(h[b] @ h[a, i] / tau)) - np.log(np.exp(h[b] @ h[a, i] / tau).sum()))
                soft = alpha @ h[b]
                soft = soft / np.linalg.norm(soft)
                logits = h[a] @ soft / tau
                beta = np.exp(logits - logits.max())
                beta /= beta.sum()
                mu = beta @ progress[a]
                var = max(beta @ (progress[a] - mu) ** 2, 1e-6)
                total += (progress[a, i] - mu) ** 2 / var + lam * 0.5 * np.log(var)
                count += 1
    return total / count


@pytest.mark.parametrize("seed", [0, 1])
def test_cycle_back_loss_equals_the_reference(seed):
    g = np.random.default_rng(seed)
    h = g.normal(size=(3, 5, 4))
    progress = np.sort(g.uniform(size=(3, 5)), axis=1)
    ours = losses.cycle_back_loss(torch.tensor(h), torch.tensor(progress), tau=0.5, variance_weight=0.01)
    assert float(ours) == pytest.approx(_cycle_back_reference(h, progress, 0.5, 0.01), rel=1e-9)


def test_cycle_back_loss_is_low_when_another_video_shows_every_moment():
    """A video whose frames each find their moment in the other video and come back score low;
    one that shows a single moment throughout sends every frame back to the same blur. The
    order of the other video does not matter (a cycle comes back either way), and the progress
    is only a target: it enters no similarity."""
    g = torch.Generator().manual_seed(3)
    content = torch.nn.functional.normalize(torch.randn(8, 6, generator=g), dim=-1)
    progress = torch.linspace(0, 1, 8).expand(2, 8)
    copy = content + 0.01 * torch.randn(8, 6, generator=g)
    good = losses.cycle_back_loss(torch.stack([content, copy]), progress, tau=0.1)
    frozen = losses.cycle_back_loss(torch.stack([content, content[:1].expand(8, 6)]), progress, tau=0.1)
    backwards = losses.cycle_back_loss(torch.stack([content, copy.flip(0)]), progress, tau=0.1)
    assert good < frozen / 10
    torch.testing.assert_close(backwards, good, rtol=0.2, atol=0.0)
    assert float(losses.cycle_back_loss(content[None], progress[:1], tau=0.1)) == 0.0


def test_l_prop_is_lowest_with_the_true_path_of_a_sequence_and_a_warped_copy():
    """The right-W diagnostic's premise, where W is known by construction: the projections of a
    sequence and of a warped copy show the same moments; L_prop with its path found on the true
    moments is lower than with the path found on moments shifted by a tenth of the sequence."""
    T = 16
    moments_a = np.linspace(0, 1, T)
    moments_b = np.linspace(0, 1, T) ** 1.7  # the copy: slow, then fast

    def points(m):  # content that shows the moment: a point on a half circle
        return torch.tensor(np.stack([np.cos(np.pi * 0.9 * m), np.sin(np.pi * 0.9 * m)], -1))

    h = torch.stack([points(moments_a), points(moments_b)])[:, None]  # (B=2, V=1, T, 2)
    z = h.clone()
    mask = torch.ones(2, 1, T, dtype=torch.bool)
    stamps = torch.arange(T).expand(2, 1, T)
    loss = losses.LRPropLoss(terms=("same", "prop"), sigma2=2.0)
    true_path = h.clone()
    shifted = torch.stack([points(moments_a), points(np.clip(moments_b + 0.1, 0, 1))])[:, None]
    right = loss(z, h, mask, stamps, path_features=true_path)["prop"]
    wrong = loss(z, h, mask, stamps, path_features=shifted)["prop"]
    assert right < wrong
