"""lrprop.core.dtw against tslearn, scipy, a float64 reference recursion and closed-form limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from tslearn.metrics import SoftDTW as TsSoftDTW
from tslearn.metrics import dtw_path_from_metric

from lrprop.core import dtw


def _random_costs(seed: int, B: int = 5, Tx: int = 13, Ty: int = 17):
    rng = np.random.default_rng(seed)
    cost = rng.random((B, Tx, Ty))
    nx = rng.integers(1, Tx + 1, B)
    ny = rng.integers(1, Ty + 1, B)
    return cost, nx, ny


def _soft_dtw_reference(cost: np.ndarray, gamma: float) -> float:
    """The soft-DTW recursion written out cell by cell in float64 (definition-level oracle)."""
    n, m = cost.shape
    R = np.full((n + 1, m + 1), np.inf)
    R[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            prev = np.array([R[i - 1, j - 1], R[i - 1, j], R[i, j - 1]])
            finite = prev[np.isfinite(prev)]
            R[i, j] = cost[i - 1, j - 1] - gamma * math.log(np.exp(-finite / gamma).sum())
    return R[n, m]


def test_pairwise_sqeuclidean_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 11, 8)), rng.normal(size=(3, 7, 8))
    got = dtw.pairwise_sqeuclidean(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    want = np.stack([cdist(x[b], y[b], "sqeuclidean") for b in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert got.min() >= 0.0


def test_pairwise_sqeuclidean_gradients_pass_gradcheck_and_gradgradcheck():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(2, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(dtw.pairwise_sqeuclidean, (x, y))
    assert torch.autograd.gradgradcheck(dtw.pairwise_sqeuclidean, (x, y))
    x2, y2 = x[0].detach().requires_grad_(), y[0].detach().requires_grad_()
    assert torch.autograd.gradcheck(dtw.pairwise_sqeuclidean, (x2, y2))  # the 2-D form


def test_pairwise_sqeuclidean_backward_works_under_bf16_autocast():
    # The product runs in bf16 there, the inputs stay float32: the gradients must come back
    # float32 and near the float32 ones (bf16 keeps 8 bits of mantissa).
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 6, 16, generator=gen), torch.randn(2, 5, 16, generator=gen)
    weights = torch.randn(2, 6, 5, generator=gen)

    def grad_of_x(autocast: bool):
        xr = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            d = dtw.pairwise_sqeuclidean(xr, y)
        (d.float() * weights).sum().backward()
        return xr.grad

    low, full = grad_of_x(True), grad_of_x(False)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, full, rtol=0.05, atol=0.05 * full.abs().max().item())


def test_pairwise_sqeuclidean_gradient_equals_autograd_through_the_formula_where_frames_coincide():
    # Small integers: every distance is exact, and frames shared by x and y sit exactly on the
    # clamp's edge at 0.
    gen = torch.Generator().manual_seed(2)
    y = torch.randint(-2, 3, (2, 6, 4), generator=gen).double()
    x = torch.cat([y[:, :3], torch.randint(-2, 3, (2, 4, 4), generator=gen).double()], 1)
    weights = torch.randn(2, 7, 6, dtype=torch.float64, generator=gen)

    def grads(fn):
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        (fn(xr, yr) * weights).sum().backward()
        return xr.grad, yr.grad

    def formula(a, b):
        return ((a * a).sum(-1)[..., None] + (b * b).sum(-1)[..., None, :] - 2.0 * a @ b.transpose(-1, -2)).clamp_min(0.0)

    assert (dtw.pairwise_sqeuclidean(x, y) == 0).sum() >= 6
    for got, want in zip(grads(dtw.pairwise_sqeuclidean), grads(formula), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_dtw_path_equals_tslearn(seed):
    cost, nx, ny = _random_costs(seed)
    paths = dtw.dtw_path(cost, nx, ny)
    totals = dtw.dtw_distance(cost, nx, ny)
    for b in range(len(cost)):
        ts_path, ts_cost = dtw_path_from_metric(cost[b, : nx[b], : ny[b]], metric="precomputed")
        assert paths[b].tolist() == [list(p) for p in ts_path]
        assert totals[b] == pytest.approx(ts_cost, rel=1e-12)


def test_dtw_path_blocks_equal_tslearn_on_each_column_block():
    rng = np.random.default_rng(4)
    cost = rng.random((9, 40))
    starts, widths = np.array([0, 5, 17, 30]), np.array([5, 12, 1, 10])
    got = dtw.dtw_path_blocks(cost, starts, widths)
    for path, s, w in zip(got, starts, widths, strict=True):
        want, _ = dtw_path_from_metric(cost[:, s : s + w], metric="precomputed")
        np.testing.assert_array_equal(path, np.asarray(want))
    with pytest.raises(ValueError, match="inside"):
        dtw.dtw_path_blocks(cost, [35], [10])
    cost[3, 7] = np.nan
    with pytest.raises(FloatingPointError):
        dtw.dtw_path_blocks(cost, starts, widths)


@pytest.mark.parametrize("seed", range(4))
def test_dtw_path_on_a_float32_cost_equals_tslearn_on_its_float64_copy(seed):
    # What float32 embeddings give. The kernels read float32 as it is; widening to float64 is
    # exact, so the oracle on the widened cost must agree to the last bit, ties included
    # (every other seed rounds the cost to a few values).
    cost, nx, ny = _random_costs(seed)
    cost = (np.round(cost * 3) if seed % 2 else cost).astype(np.float32)
    for given in (cost, torch.from_numpy(cost)):
        paths, totals = dtw.dtw_path(given, nx, ny), dtw.dtw_distance(given, nx, ny)
        for b in range(len(cost)):
            ts_path, ts_cost = dtw_path_from_metric(cost[b, : nx[b], : ny[b]].astype(np.float64), metric="precomputed")
            assert paths[b].tolist() == [list(p) for p in ts_path]
            assert totals[b] == pytest.approx(ts_cost, rel=1e-12)
    wide = dtw.dtw_path_blocks(cost.astype(np.float64)[0], [0, 5], [5, 12])
    for got, want in zip(dtw.dtw_path_blocks(cost[0], [0, 5], [5, 12]), wide, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_float32_cost_reaches_the_kernel_without_a_float64_copy():
    # The copy to float64 cost 3x the kernel's time at B=16, T=240 (docs/benchmarks.md).
    cost = np.random.default_rng(0).random((4, 20, 30)).astype(np.float32)
    arr, single = dtw._as_batch(cost)
    assert arr.dtype == np.float32 and np.shares_memory(arr, cost) and not single
    arr, _ = dtw._as_batch(torch.from_numpy(cost))
    assert arr.dtype == np.float32 and np.shares_memory(arr, cost)
    # Other dtypes still become float64: bfloat16 (no numpy type), integers
    assert dtw._as_batch(torch.from_numpy(cost).bfloat16())[0].dtype == np.float64
    ints = np.arange(12).reshape(3, 4)
    assert dtw._as_batch(ints)[0].dtype == np.float64
    assert dtw.dtw_path(ints).tolist() == dtw.dtw_path(ints.astype(np.float64)).tolist()


def test_dtw_path_single_matrix_and_moves():
    cost, _, _ = _random_costs(7, B=1, Tx=9, Ty=4)
    path = dtw.dtw_path(cost[0])
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [8, 3]
    steps = np.diff(path, axis=0)
    assert {tuple(s) for s in steps} <= {(1, 0), (0, 1), (1, 1)}


def test_dtw_alignment_marks_exactly_the_path():
    cost, nx, ny = _random_costs(3)
    W = dtw.dtw_alignment(torch.from_numpy(cost), nx, ny)
    assert W.dtype == torch.bool and W.shape == cost.shape
    for b, path in enumerate(dtw.dtw_path(cost, nx, ny)):
        expected = np.zeros(cost.shape[1:], dtype=bool)
        expected[path[:, 0], path[:, 1]] = True
        assert np.array_equal(W[b].numpy(), expected)


def test_dtw_rejects_bad_lengths():
    cost, _, _ = _random_costs(0, B=2)
    with pytest.raises(ValueError, match="x_lengths"):
        dtw.dtw_path(cost, [0, 3], None)
    with pytest.raises(ValueError, match="y_lengths"):
        dtw.dtw_path(cost, None, [3, 99])
    with pytest.raises(ValueError, match="shape"):
        dtw.dtw_path(np.zeros(5))


@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_soft_dtw_equals_float64_reference(gamma):
    cost, nx, ny = _random_costs(11, B=4, Tx=8, Ty=6)
    got = dtw.soft_dtw(torch.from_numpy(cost), gamma, nx, ny).numpy()
    want = [_soft_dtw_reference(cost[b, : nx[b], : ny[b]], gamma) for b in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_soft_dtw_value_and_gradient_equal_tslearn():
    cost, nx, ny = _random_costs(5, B=3, Tx=20, Ty=15)
    c = torch.from_numpy(cost).requires_grad_()
    values = dtw.soft_dtw(c, 0.1, nx, ny)
    values.sum().backward()
    for b in range(3):
        ts = TsSoftDTW(cost[b, : nx[b], : ny[b]], gamma=0.1)
        assert values[b].item() == pytest.approx(ts.compute(), rel=1e-10)
        np.testing.assert_allclose(c.grad[b, : nx[b], : ny[b]].numpy(), ts.grad(), rtol=1e-9, atol=1e-12)
        # Cells beyond the valid lengths get no gradient.
        assert c.grad[b, nx[b] :].abs().sum() == 0 and c.grad[b, :, ny[b] :].abs().sum() == 0


@pytest.mark.parametrize("gamma", [0.01, 0.1, 1.0])
def test_soft_dtw_gradient_equals_tslearn_at_training_sizes(gamma):
    # The kernel walks anti-diagonals and reuses the forward's softmin weights for the
    # gradient; tslearn runs Algorithm 2 row by row with its own exp per cell (float64 both).
    rng = np.random.default_rng(7)
    B, T = 3, 240
    cost = 4.0 * rng.random((B, T, T))
    nx, ny = np.array([240, 200, 97]), np.array([240, 131, 240])
    c = torch.from_numpy(cost).requires_grad_()
    values = dtw.soft_dtw(c, gamma, nx, ny)
    values.sum().backward()
    for b in range(B):
        ts = TsSoftDTW(cost[b, : nx[b], : ny[b]], gamma=gamma)
        assert values[b].item() == pytest.approx(ts.compute(), rel=1e-12)
        want = ts.grad()
        np.testing.assert_allclose(c.grad[b, : nx[b], : ny[b]].numpy(), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    with torch.no_grad():  # the value-only pass gives the same values
        torch.testing.assert_close(dtw.soft_dtw(c, gamma, nx, ny), values.detach(), rtol=0, atol=0)


def test_soft_dtw_on_costs_of_wide_range_equals_tslearn():
    # (low - high) / γ reaches -2000 here: the weights below 1e-290 are flushed to 0, the rest
    # must still equal the float64 reference.
    rng = np.random.default_rng(8)
    cost = 200.0 * rng.random((2, 40, 30)) ** 4
    c = torch.from_numpy(cost).requires_grad_()
    values = dtw.soft_dtw(c, 0.1)
    values.sum().backward()
    for b in range(2):
        ts = TsSoftDTW(cost[b], gamma=0.1)
        assert values[b].item() == pytest.approx(ts.compute(), rel=1e-12)
        want = ts.grad()
        np.testing.assert_allclose(c.grad[b].numpy(), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


def test_the_kernels_exp_and_log_equal_libm_to_a_few_ulp():
    # The soft-DTW kernel's own exp (of x in [log(1e-290) - 1, 0]) and log (of [1, 3]),
    # polynomials the compiler can vectorise, against the C library's.
    from lrprop.core._dtw_kernels import _EXP_FLOOR, _exp_split, _log_1_to_3

    xs = np.concatenate([np.linspace(_EXP_FLOOR - 1.0, 0.0, 20001), -np.logspace(-12, 0, 2001), [0.0]])
    for x in xs:
        reduced, bits = _exp_split(x)
        got = reduced * np.array([bits], dtype=np.int64).view(np.float64)[0]
        assert got == pytest.approx(math.exp(x), rel=5e-16, abs=0), x
    for t in np.concatenate([np.linspace(1.0, 3.0, 20001), 1.0 + np.logspace(-15, -1, 200)]):
        assert _log_1_to_3(t) == pytest.approx(math.log(t), rel=5e-16, abs=2e-16), t


def test_soft_dtw_gradcheck_float64():
    cost, nx, ny = _random_costs(2, B=3, Tx=6, Ty=7)
    c = torch.from_numpy(cost).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: dtw.soft_dtw(t, 0.1, nx, ny), (c,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda t: dtw.soft_dtw(t, 0.5, nx, ny, normalize=True), (c,), eps=1e-6, atol=1e-7)


def test_soft_dtw_tends_to_dtw_as_gamma_vanishes():
    cost, nx, ny = _random_costs(4, B=4, Tx=15, Ty=12)
    exact = dtw.dtw_distance(cost, nx, ny)
    gaps = []
    for gamma in (1.0, 0.1, 0.01, 0.001):
        soft = dtw.soft_dtw(torch.from_numpy(cost), gamma, nx, ny).numpy()
        # softmin lies in [min - γ log 3, min]: soft-DTW is below DTW by at most γ log 3 per step.
        assert np.all(soft <= exact + 1e-12)
        assert np.all(soft >= exact - gamma * math.log(3) * (nx + ny))
        gaps.append(np.abs(exact - soft).max())
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-2


def test_padding_beyond_lengths_changes_nothing():
    cost, nx, ny = _random_costs(8, B=3, Tx=10, Ty=9)
    padded = cost.copy()
    rng = np.random.default_rng(1)
    for b in range(3):
        padded[b, nx[b] :, :] = rng.random((10 - nx[b], 9)) * 1e3
        padded[b, :, ny[b] :] = rng.random((10, 9 - ny[b])) * 1e3
    assert [p.tolist() for p in dtw.dtw_path(cost, nx, ny)] == [p.tolist() for p in dtw.dtw_path(padded, nx, ny)]
    a, b = torch.from_numpy(cost).requires_grad_(), torch.from_numpy(padded).requires_grad_()
    va, vb = dtw.soft_dtw(a, 0.1, nx, ny), dtw.soft_dtw(b, 0.1, nx, ny)
    torch.testing.assert_close(va, vb, rtol=0, atol=0)
    va.sum().backward()
    vb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


def test_soft_dtw_keeps_dtype_and_normalizes_by_lengths():
    cost, nx, ny = _random_costs(9, B=2)
    c32 = torch.from_numpy(cost).float()
    v = dtw.soft_dtw(c32, 0.1, nx, ny)
    assert v.dtype == torch.float32
    vn = dtw.soft_dtw(c32, 0.1, nx, ny, normalize=True)
    torch.testing.assert_close(vn, v / torch.tensor(nx + ny, dtype=torch.float32))
    with pytest.raises(ValueError, match="gamma"):
        dtw.soft_dtw(c32, 0.0)


def test_soft_dtw_divergence_zero_on_itself_and_nonnegative():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(3, 12, 4)))
    y = torch.from_numpy(rng.normal(size=(3, 9, 4)))
    torch.testing.assert_close(dtw.soft_dtw_divergence(x, x, 0.5), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    assert (dtw.soft_dtw_divergence(x, y, 0.5, [12, 7, 3], [9, 9, 2]) >= 0).all()


@pytest.fixture(scope="module")
def interpreted_triton_kernels():
    pytest.importorskip("triton")
    from lrprop.core import _dtw_triton

    return _dtw_triton.build_kernels(interpret=True)


# The interpreter evaluates masked-off lanes too (inf - inf there); the GPU does not.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("gamma, block", [(0.1, 4), (1.0, 16)])
def test_triton_soft_dtw_equals_tslearn_under_the_interpreter(interpreted_triton_kernels, gamma, block):
    # The GPU kernels run on the CPU in Triton's interpreter: per-pair lengths (a one-row and a
    # one-column pair too) and diagonals longer than a block (block 4), against tslearn.
    from lrprop.core import _dtw_triton

    rng = np.random.default_rng(9)
    B, Tx, Ty = 4, 11, 9
    cost = 2.0 * rng.random((B, Tx, Ty))
    nx, ny = np.array([11, 6, 1, 11]), np.array([9, 9, 5, 1])

    def run(want_grad):
        args = (torch.from_numpy(cost), torch.from_numpy(nx).int(), torch.from_numpy(ny).int(), gamma, want_grad)
        return _dtw_triton.soft_dtw(*args, kernels=interpreted_triton_kernels, block=block)

    values, E = run(True)
    for b in range(B):
        ts = TsSoftDTW(cost[b, : nx[b], : ny[b]], gamma=gamma)
        assert values[b].item() == pytest.approx(ts.compute(), rel=1e-12)
        np.testing.assert_allclose(E[b, : nx[b], : ny[b]].numpy(), ts.grad(), rtol=1e-9, atol=1e-12)
        assert E[b, nx[b] :].abs().sum() == 0 and E[b, :, ny[b] :].abs().sum() == 0
    no_grad_values, none = run(False)
    assert none is None
    torch.testing.assert_close(no_grad_values, values, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_gpu_route_of_soft_dtw_checks_its_input_and_equals_the_cpu_kernel(interpreted_triton_kernels, monkeypatch):
    # What soft_dtw runs for a CUDA input, here on CPU tensors with the interpreted kernels.
    from lrprop.core import _dtw_triton

    monkeypatch.setattr(_dtw_triton, "_compiled", lambda: interpreted_triton_kernels)
    cost, nx, ny = _random_costs(13, B=3, Tx=7, Ty=6)
    values, E = dtw._soft_dtw_gpu(torch.from_numpy(cost).float(), nx, ny, 0.5, True)
    c = torch.from_numpy(cost.astype(np.float32).astype(np.float64)).requires_grad_()
    dtw.soft_dtw(c, 0.5, nx, ny).sum().backward()
    torch.testing.assert_close(values, dtw.soft_dtw(c.detach(), 0.5, nx, ny), rtol=1e-12, atol=0)
    torch.testing.assert_close(E, c.grad, rtol=1e-9, atol=1e-12)
    cost[1, 0, 0] = np.inf
    with pytest.raises(FloatingPointError, match=r"pair\(s\) \[1\]"):
        dtw._soft_dtw_gpu(torch.from_numpy(cost), nx, ny, 0.5, True)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_triton_dtw_paths_equal_tslearn_under_the_interpreter(interpreted_triton_kernels, monkeypatch):
    from lrprop.core import _dtw_triton

    rng = np.random.default_rng(10)
    cost = rng.random((5, 11, 9))
    cost[4] = 1.0  # ties everywhere: ↘ first, then ↓, as tslearn
    nx, ny = np.array([11, 6, 1, 11, 8]), np.array([9, 9, 5, 1, 9])
    paths, counts, totals = _dtw_triton.dtw_paths(
        torch.from_numpy(cost),
        torch.from_numpy(nx).int(),
        torch.from_numpy(ny).int(),
        kernels=interpreted_triton_kernels,
        block=4,
    )
    for b in range(len(cost)):
        want, want_cost = dtw_path_from_metric(cost[b, : nx[b], : ny[b]], metric="precomputed")
        np.testing.assert_array_equal(paths[b, : counts[b]].numpy()[::-1], np.asarray(want))
        assert totals[b].item() == pytest.approx(want_cost, rel=1e-12)
    # The route dtw_path takes for a CUDA input, here on CPU tensors.
    monkeypatch.setattr(_dtw_triton, "_compiled", lambda: interpreted_triton_kernels)
    monkeypatch.setattr(_dtw_triton, "available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    routed = dtw.dtw_path(torch.from_numpy(cost), nx, ny)
    for got, want in zip(routed, dtw.dtw_path(cost, nx, ny), strict=True):
        np.testing.assert_array_equal(got, want)


def test_triton_kernels_compile_for_an_h100_without_one():
    # Ahead-of-time compilation to sm_90 machine code checks what the interpreter cannot: the
    # kernels' types, loops and loop-carried values as the GPU compiler sees them.
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from lrprop.core import _dtw_triton

    forward, backward, paths = _dtw_triton.build_kernels()
    ptrs = {"nx_ptr": "*i32", "ny_ptr": "*i32", "Tx": "i32", "Ty": "i32", "BLOCK": "constexpr"}
    signatures = [
        (forward, {"cost_ptr": "*fp64", "R_ptr": "*fp64", **ptrs, "gamma": "fp64"}),
        (backward, {"cost_ptr": "*fp64", "R_ptr": "*fp64", "E_ptr": "*fp64", **ptrs, "gamma": "fp64"}),
        (paths, {"cost_ptr": "*fp64", "acc_ptr": "*fp64", "path_ptr": "*i32", "count_ptr": "*i32", **ptrs}),
    ]
    for kernel, signature in signatures:
        order = list(kernel.arg_names)
        source = ASTSource(fn=kernel, signature={k: signature[k] for k in order}, constexprs={"BLOCK": 256})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"], kernel


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_give_the_cpu_results():
    cost, nx, ny = _random_costs(12, B=3)
    c_cpu = torch.from_numpy(cost).requires_grad_()
    c_gpu = torch.from_numpy(cost).cuda().requires_grad_()
    v_cpu, v_gpu = dtw.soft_dtw(c_cpu, 0.1, nx, ny), dtw.soft_dtw(c_gpu, 0.1, nx, ny)
    v_cpu.sum().backward()
    v_gpu.sum().backward()
    torch.testing.assert_close(v_gpu.cpu(), v_cpu)
    torch.testing.assert_close(c_gpu.grad.cpu(), c_cpu.grad)
    assert torch.equal(dtw.dtw_alignment(c_gpu, nx, ny).cpu(), dtw.dtw_alignment(c_cpu, nx, ny))


def test_non_finite_costs_raise_instead_of_walking_off_the_matrix():
    cost, nx, ny = _random_costs(13, B=3)
    bad = cost.copy()
    bad[1, 0, 0] = np.nan
    bad[2, nx[2] - 1, ny[2] - 1] = np.inf
    for fn in (dtw.dtw_path, dtw.dtw_distance):
        with pytest.raises(FloatingPointError, match=r"pair\(s\) \[1, 2\]"):
            fn(bad, nx, ny)
    with pytest.raises(FloatingPointError):
        dtw.soft_dtw(torch.from_numpy(bad), 0.1, nx, ny)
    # NaN in the padding is never read.
    padded = cost.copy()
    padded[0, nx[0] :, :] = np.nan
    assert dtw.dtw_path(padded, nx, ny)[0].tolist() == dtw.dtw_path(cost, nx, ny)[0].tolist()
