"""Hardware-aware training: gradients through the IR drop against finite differences.

Independent truth: central finite differences of the nodal solver's transfer matrix
(``nodal.LinearArray``), of the Newton solve, and of the loss of a whole network whose
forward pass reads Compact arrays (smooth surrogate, so the loss is differentiable).
"""

import numpy as np
import pytest

from cosim import Model
from cosim.crossbar import Compact, nodal
from cosim.crossbar.adjoint import nonlinear_vjp, transfer_gradient
from cosim.crossbar.base import Crossbar
from cosim.learning.bp import BP
from cosim.learning.bptt import BPTT, RateRegularizer
from cosim.network import SRNN
from cosim.surrogate import SmoothSpike

ARRAYS = [(4, 6, 10.0, 10.0), (6, 4, 10.0, 3.0), (5, 5, 0.0, 10.0), (5, 5, 10.0, 0.0),
          (3, 7, 0.0, 0.0), (1, 3, 5.0, 5.0), (3, 1, 5.0, 5.0),
          (1, 1, 5.0, 5.0)]


def relative_error(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


def central_differences(loss, G, h):
    """∂loss/∂G by central differences with step h in every entry."""
    num = np.zeros_like(G)
    for idx in np.ndindex(G.shape):
        up, down = G.copy(), G.copy()
        up[idx] += h
        down[idx] -= h
        num[idx] = (loss(up) - loss(down)) / (2 * h)
    return num


def read_weight_gradient(array, W, x, g, h):
    """∂/∂W of sum(g * array(x)) by central differences of reprogrammed reads (leaves the
    array programmed with W)."""
    num_W = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        for sign in (1, -1):
            shifted = W.copy()
            shifted[idx] += sign * h
            array.program(shifted)
            num_W[idx] += sign * np.sum(g * array(x)) / (2 * h)
    array.program(W)
    return num_W


@pytest.mark.parametrize("R,N,r_word,r_bit", ARRAYS)
def test_transfer_gradient_matches_finite_differences_of_the_nodal_solve(R, N, r_word, r_bit):
    rng = np.random.default_rng(R * 10 + N)
    G = rng.uniform(1e-3, 1e-2, (R, N))       # strong IR drop: G r up to 0.1 per segment
    grad_A = rng.normal(size=(R, N))

    def loss(G):
        return np.sum(grad_A * nodal.LinearArray(G, r_word, r_bit).transfer_matrix())

    got = transfer_gradient(G, r_word, r_bit, grad_A)
    num = central_differences(loss, G, 1e-7)
    assert relative_error(got, num) <= 1e-8


PERIPHERY = [(4, 6, 10.0, 10.0, 30.0, 0.0), (6, 4, 10.0, 3.0, 0.0, 20.0),
             (5, 5, 10.0, 10.0, 40.0, 25.0), (5, 5, 0.0, 10.0, 0.0, 30.0),
             (5, 5, 10.0, 0.0, 30.0, 0.0), (1, 3, 5.0, 5.0, 10.0, 10.0)]


@pytest.mark.parametrize("R,N,r_word,r_bit,r_driver,r_sense", PERIPHERY)
def test_transfer_gradient_through_driver_and_sense_resistors(R, N, r_word, r_bit, r_driver,
                                                              r_sense):
    """r_driver / r_sense in series with the terminal segments: the adjoint against central
    differences of the nodal solver's transfer matrix with the same periphery, and it differs
    from the gradient of the array without them."""
    rng = np.random.default_rng(R * 10 + N + 1)
    G = rng.uniform(1e-3, 1e-2, (R, N))
    grad_A = rng.normal(size=(R, N))
    periphery = {"r_driver": r_driver, "r_sense": r_sense}

    def loss(G):
        A = nodal.LinearArray(G, r_word, r_bit, **periphery).transfer_matrix()
        return np.sum(grad_A * A)

    got = transfer_gradient(G, r_word, r_bit, grad_A, **periphery)
    num = central_differences(loss, G, 1e-7)
    assert relative_error(got, num) <= 1e-8
    assert relative_error(transfer_gradient(G, r_word, r_bit, grad_A), num) > 1e-4


@pytest.mark.parametrize("R,N", [(7, 12), (12, 7)])
def test_transfer_gradient_reuses_the_programmed_marching(R, N):
    """The blocks kept by the transfer matrix (its mirror when R > N) give the gradient of a
    fresh marching."""
    rng = np.random.default_rng(2)
    G = rng.uniform(1e-5, 1e-3, (R, N))
    grad_A = rng.normal(size=(R, N))
    array = nodal.LinearArray(G, 20.0, 30.0, r_driver=5.0, r_sense=7.0, keep_marching=True)
    array.transfer_matrix()
    assert array.marching is not None
    inference = nodal.LinearArray(G, 20.0, 30.0)
    inference.transfer_matrix()
    assert inference.marching is None                    # only training keeps the blocks
    kept = transfer_gradient(G, 20.0, 30.0, grad_A, r_driver=5.0, r_sense=7.0,
                             marching=array.marching)
    fresh = transfer_gradient(G, 20.0, 30.0, grad_A, r_driver=5.0, r_sense=7.0)
    np.testing.assert_allclose(kept, fresh, rtol=1e-13, atol=1e-13 * np.abs(fresh).max())


def test_compact_gradients_through_driver_and_sense_resistors():
    """∂L/∂W and ∂L/∂x of a linear read with r_driver and r_sense against finite differences
    of the reads themselves."""
    rng = np.random.default_rng(4)
    W = rng.normal(size=(5, 3))
    x = rng.random((3, 5))
    g = rng.normal(size=(3, 3))
    array = Compact(r_word=200.0, r_bit=100.0, r_driver=500.0, r_sense=300.0)
    array.program(W)
    grad_x, grad_W = array.vjp(x, g)
    h = 1e-6
    num_W = read_weight_gradient(array, W, x, g, h)
    assert relative_error(grad_W, num_W) <= 1e-7
    np.testing.assert_allclose(grad_x, g @ array.linear_map().T, rtol=1e-12)
    ideal_periphery = Compact(r_word=200.0, r_bit=100.0)
    ideal_periphery.program(W)
    assert relative_error(ideal_periphery.vjp(x, g)[1], num_W) > 1e-4


@pytest.mark.parametrize("R,N,r_word,r_bit", ARRAYS)
def test_nonlinear_adjoint_of_linear_cells_equals_the_transfer_gradient(R, N, r_word, r_bit):
    """Two independent derivations: the sparse implicit-function adjoint with i = G (v_w - v_b)
    (∂i/∂G = cell voltage) must give the marching adjoint's ∂L/∂G, and ∂L/∂V = A ∂L/∂I."""
    rng = np.random.default_rng(7)
    G = rng.uniform(1e-3, 1e-2, (R, N))
    grad_A = rng.normal(size=(R, N))
    array = nodal.LinearArray(G, r_word, r_bit)

    def cell(v_w, v_b):
        return G * (v_w - v_b), G, -G

    total = np.zeros_like(G)
    for i in range(R):
        V = np.zeros(R)
        V[i] = 1.0
        sol = array.solve(V)
        grad_V, grad_di = nonlinear_vjp(cell, V, sol.word_voltages, sol.bit_voltages,
                                        r_word, r_bit, grad_A[i])
        total += grad_di * (sol.word_voltages - sol.bit_voltages)
        np.testing.assert_allclose(grad_V, array.transfer_matrix() @ grad_A[i], rtol=1e-9,
                                   atol=1e-12 * np.abs(grad_A[i]).max())
    assert relative_error(total, transfer_gradient(G, r_word, r_bit, grad_A)) <= 1e-12


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
@pytest.mark.parametrize("r_word,r_bit,w_max", [(0.0, 0.0, None), (10.0, 10.0, None),
                                                (1000.0, 1000.0, 3.0), (10.0, 0.0, None),
                                                (0.0, 10.0, 3.0)])
def test_compact_vjp_matches_finite_differences(read, r_word, r_bit, w_max):
    """∂L/∂W and ∂L/∂x of one array read (w_max=3 clips some weights; None moves s)."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 3))
    x = rng.random((3, 4))
    g = rng.normal(size=(3, 3))
    array = Compact(r_word=r_word, r_bit=r_bit, read=read, w_max=w_max, cache_size=0)
    array.program(W)
    grad_x, grad_W = array.vjp(x, g)
    h = 1e-6
    num_W = read_weight_gradient(array, W, x, g, h)
    num_x = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        for sign in (1, -1):
            shifted = x.copy()
            shifted[idx] += sign * h
            num_x[idx] += sign * np.sum(g * array(shifted)) / (2 * h)
    assert relative_error(grad_W, num_W) <= 1e-7
    assert relative_error(grad_x, num_x) <= 1e-7


def test_nonlinear_vjp_reuses_the_node_voltages_of_the_reads():
    """Once an array has been asked for a gradient (training), the vjp after a nonlinear
    read of the same inputs solves nothing again (the read kept its converged node voltages)
    and gives the gradients of an array that solves them afresh; reprogramming forgets them.
    Before any gradient (inference) reads keep nothing."""
    rng = np.random.default_rng(3)
    W = rng.normal(size=(12, 7))
    x = (rng.random((9, 12)) < 0.4).astype(float)
    x[4] = 0.0                                       # undriven: no solve, adjoint at 0 V
    x[6] = x[2]                                      # a repeated pattern
    g = rng.normal(size=(9, 7))
    array = Compact(read="nonlinear", r_word=2.0, r_bit=1.5, cache_size=0)
    array.program(W)
    array(x)
    assert array.stats["solves"] == 7                # distinct driven patterns
    array.vjp(x, g)                                  # inference kept nothing: solved again
    assert array.stats["solves"] == 14
    array.program(W - 0.5)
    array(x)                                         # training: this read keeps them
    solved = array.stats["solves"]
    assert solved == 21
    array.program(W)
    array(x)
    solved = array.stats["solves"]
    grad_x, grad_W = array.vjp(x, g)
    assert array.stats["solves"] == solved
    fresh = Compact(read="nonlinear", r_word=2.0, r_bit=1.5, cache_size=0)
    fresh.program(W)
    want_x, want_W = fresh.vjp(x, g)
    assert fresh.stats["solves"] == 7
    assert relative_error(grad_x, want_x) <= 1e-14
    assert relative_error(grad_W, want_W) <= 1e-14
    array.program(W + 0.5)
    array.vjp(x, g)
    assert array.stats["solves"] == solved + 7


def numeric_gradient(net, rule, x, y, key, eps=1e-5, entries=None):
    w = net.weights[key]
    grad = np.full(w.shape, np.nan)
    for idx in (entries or list(np.ndindex(w.shape))):
        grad[idx] = 0.0
        for sign in (1, -1):
            shifted = w.copy()
            shifted[idx] += sign * eps
            net.set_weights({key: shifted})
            grad[idx] += sign * rule.backward(net, net.run(x, trace=True), y)[0] / (2 * eps)
    net.set_weights({key: w})
    return grad


class StraightThrough(Compact):
    """Today's estimator before exact gradients: IR drop forward, effective weights backward."""

    linear_map = Crossbar.linear_map
    map_gradient = Crossbar.map_gradient
    vjp = Crossbar.vjp


def smooth_network(crossbar, **extra):
    net = SRNN(4, 5, 3, neuron="lif", seed=3, input_scale=20, crossbar=crossbar, **extra)
    net.neuron.surrogate = SmoothSpike(0.3)
    return net


@pytest.mark.parametrize("r,extra", [(10.0, {}), (1000.0, {"n_delay": 2})])
def test_bptt_through_ir_drop_matches_finite_differences(r, extra):
    """The issue's check: ≤ 1e-6 relative at r = 10 Ω, through the full IR-drop forward pass."""
    rng = np.random.default_rng(1)
    x = rng.random((2, 8, 4))
    y = rng.integers(0, 3, 2)
    rule = BPTT(reset_grad=True, rate_reg=RateRegularizer(0.1, 0.05))
    net = smooth_network(Compact(r_word=r, r_bit=r), **extra)
    _, grads, _ = rule.gradients(net, x, y)
    ste = smooth_network(StraightThrough(r_word=r, r_bit=r), **extra)
    _, ste_grads, _ = rule.gradients(ste, x, y)
    for key in ("in", "rec", "out"):
        num = numeric_gradient(net, rule, x, y, key)
        assert np.abs(num).max() > 1e-4, "gradient too small to test anything"
        assert relative_error(grads[key], num) <= 1e-6, key
        # the check can fail: the straight-through gradient misses the wires
        assert relative_error(ste_grads[key], num) > 1e-4, key


def test_bp_through_ir_drop_is_bptt_truncated():
    """BP uses the same array hooks: with truncate=1 BPTT and BP agree on Compact arrays."""
    rng = np.random.default_rng(4)
    x = (rng.random((3, 10, 4)) < 0.5).astype(float)
    y = rng.integers(0, 3, 3)
    net = SRNN(4, 5, 3, neuron="lif", seed=2, input_scale=20,
               crossbar=Compact(r_word=100.0, r_bit=100.0))
    _, bp, _ = BP().gradients(net, x, y)
    _, truncated, _ = BPTT(truncate=1).gradients(net, x, y)
    for key in bp:
        np.testing.assert_allclose(bp[key], truncated[key], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("extra", [{}, {"n_delay": 2}])
def test_bptt_through_nonlinear_read_matches_finite_differences(extra):
    """Nonlinear read: implicit-function adjoint of every Newton solve (a sample of entries);
    with delays, each recurrent slice's share collected step by step in the backward loop."""
    rng = np.random.default_rng(1)
    x = rng.random((1, 5, 4))
    y = np.array([2])
    rule = BPTT(reset_grad=True)
    net = smooth_network(Compact(r_word=300.0, r_bit=300.0, read="nonlinear"), **extra)
    _, grads, _ = rule.gradients(net, x, y)
    for key, shape in (("in", (4, 5)), ("rec", (5, 5)), ("out", (5, 3))):
        entries = [tuple(int(v) for v in np.unravel_index(k, shape))
                   for k in rng.choice(np.prod(shape), 4, replace=False)]
        if key == "rec":
            entries = [(i, j) for i, j in entries if i != j] + [(0, 1)]
        num = numeric_gradient(net, rule, x, y, key, entries=entries)
        picked = np.array([grads[key][e] for e in entries])
        want = np.array([num[e] for e in entries])
        assert np.abs(want).max() > 1e-5, "gradient too small to test anything"
        assert relative_error(picked, want) <= 1e-6, key


def test_zero_wire_resistance_gives_the_ideal_gradient():
    """At r = 0 the exact gradient is the ideal one (differences are rounding only)."""
    rng = np.random.default_rng(1)
    x = rng.random((2, 8, 4))
    y = rng.integers(0, 3, 2)
    rule = BPTT(reset_grad=True)
    _, ideal, _ = rule.gradients(smooth_network("ideal"), x, y)
    _, wires, _ = rule.gradients(smooth_network(Compact(r_word=0.0, r_bit=0.0)), x, y)
    for key in ideal:
        np.testing.assert_allclose(wires[key], ideal[key], rtol=1e-12,
                                   atol=1e-12 * np.abs(ideal[key]).max())


def test_training_reprograms_the_mapped_weights_and_reads_them():
    """After every update the arrays hold the new float weights as quantised, variable,
    partly stuck conductances, and the forward pass reads those (with IR drop)."""
    rng = np.random.default_rng(0)
    x = (rng.random((8, 5, 4)) < 0.5).astype(float)
    y = rng.integers(0, 3, 8)
    array = Compact(r_word=100.0, r_bit=100.0, levels=16, program_sigma=0.05,
                    stuck_on_rate=0.02, stuck_off_rate=0.02, seed=5)
    net = SRNN(4, 5, 3, neuron="lif", seed=2, input_scale=20, crossbar=array)
    before = net.weights
    Model(net, rule="bptt", lr=1e-2, batch_size=4, seed=0).train(x, y, epochs=1, progress=False)
    after = net.weights
    assert not np.allclose(before["in"], after["in"])
    for (key, _), backend in net.backends().items():
        np.testing.assert_array_equal(backend.weights, after[key])
        k = backend.read_factor
        assert not np.allclose(backend.effective_weights, after[key], rtol=1e-3)
        # independent read of the programmed conductances
        A = nodal.LinearArray(backend.conductances * k, 100.0, 100.0).transfer_matrix()
        M = (A[:, 0::2] - A[:, 1::2]) / (backend.scale * k)
        probe = (rng.random((3, M.shape[0])) < 0.5).astype(float)
        np.testing.assert_allclose(backend(probe), probe @ M, rtol=1e-9,
                                   atol=1e-12 * np.abs(M).max())


def test_transfer_gradient_rejects_bad_input():
    G = np.full((2, 3), 1e-5)
    with pytest.raises(ValueError, match="grad_transfer"):
        transfer_gradient(G, 1.0, 1.0, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="G must"):
        transfer_gradient(-G, 1.0, 1.0, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="r_word"):
        transfer_gradient(G, -1.0, 1.0, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="grad_transfer"):
        transfer_gradient(G, 1.0, 1.0, np.full((2, 3), np.nan))
    array = Compact(r_word=1.0, r_bit=1.0)
    array.program(np.ones((2, 3)))
    with pytest.raises(ValueError, match="grad_map"):
        array.map_gradient(np.ones((3, 2)))


def test_nonlinear_vjp_with_a_dac_reuses_the_reads_and_linearises_at_their_levels():
    """With a DAC the reads solve the quantised source voltages; the vjp linearises there
    (the quantiser passing gradients straight through): it reuses the reads' node voltages
    and equals the vjp of the same array fed the quantised inputs."""
    rng = np.random.default_rng(5)
    W = rng.normal(size=(8, 5))
    x = rng.random((6, 8))                           # off the 3-bit grid
    g = rng.normal(size=(6, 5))
    kw = dict(read="nonlinear", r_word=2.0, r_bit=1.5, cache_size=0, dac_bits=3)
    array = Compact(**kw)
    array.program(W)
    array.vjp(x[:1], g[:1])                          # training from now on
    array(x)
    solved = array.stats["solves"]
    grad_x, grad_W = array.vjp(x, g)
    assert array.stats["solves"] == solved           # the reads' voltages were reused
    levels = Compact(**kw)
    levels.program(W)
    on_grid = np.round(x * 7) / 7                    # the DAC's levels over [0, x_max = 1]
    want_x, want_W = levels.vjp(on_grid, g)
    assert relative_error(grad_x, want_x) <= 1e-12
    assert relative_error(grad_W, want_W) <= 1e-12


def test_adjoint_of_an_array_too_large_for_memory_is_refused_before_work():
    """The adjoint of a 2000 x 4000-cell array would hold ~0.5 TB of marching blocks and
    cell voltages: one MemoryLimitError naming it, before any block is formed."""
    from cosim.crossbar import adjoint
    from cosim.errors import MemoryLimitError
    G = np.full((2000, 4000), 1e-6)
    with pytest.raises(MemoryLimitError, match="adjoint of a 2000 x 4000-cell array"):
        adjoint.transfer_gradient(G, 1.0, 1.0, np.ones_like(G))


def test_training_solves_each_nonlinear_read_once():
    """A training step's backward pass reuses the node voltages its forward pass solved, from
    the first batch on: one batch of training solves exactly the reads an inference run of
    the same samples solves (before, the first batch solved every read twice)."""
    from cosim import Model
    from cosim.crossbar import Compact
    from cosim.network import SRNN
    rng = np.random.default_rng(5)
    x = (rng.random((6, 8, 5)) < 0.5).astype(float)
    y = rng.integers(0, 3, 6)

    def solves(net):
        return sum(b.stats["solves"] for b in net.backends().values())

    def network():
        return SRNN(5, 7, 3, neuron="lif", seed=1,
                    crossbar=Compact(r_word=2.0, r_bit=2.0, read="nonlinear", cache_size=0))
    inference = network()
    inference.run(x)
    trained = network()
    Model(trained, rule="bptt", lr=1e-3, batch_size=6, seed=0).train(x, y, epochs=1,
                                                                        progress=False)
    assert solves(inference) > 0 and solves(trained) == solves(inference)


def test_training_differentiates_each_nonlinear_read_once():
    """The backward pass needs ∂L/∂z of the recurrent and readout arrays and ∂L/∂W of every
    array: both come from one adjoint solve per read (``SRNN.array_vjp``), so one gradient
    differentiates each read once (before: every read of the recurrent and readout arrays
    twice).  Slice d of W_rec reads z_0 .. z_{T-1-d} for the steps d .. T-1."""
    rng = np.random.default_rng(8)
    batch, steps = 3, 6
    x = (rng.random((batch, steps, 4)) < 0.6).astype(float)
    y = rng.integers(0, 3, batch)
    net = smooth_network(Compact(r_word=2.0, r_bit=2.0, read="nonlinear", cache_size=0),
                         n_delay=2)
    _, _, record = BPTT().gradients(net, x, y)
    assert record.z.any()
    reads = {("in", 1): batch * steps, ("in", 2): batch * steps, ("out", 1): batch * steps,
             ("rec", 1): batch * (steps - 1), ("rec", 2): batch * (steps - 2)}
    assert {k: b.stats["adjoints"] for k, b in net.backends().items()} == reads
