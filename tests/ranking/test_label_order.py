"""Tests for t5rank.ranking._label_order (the sort-based unique softmax).

Oracles: a NumPy loop over label groups, the ``[n, n]`` direct form in
float64, central differences, and ``jax.hessian`` of the direct form.
"""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5rank.ranking import _label_order

IMPLEMENTATIONS = {
  "loop": _label_order._earlier_groups_loop,
  "cumulative": _label_order._earlier_groups_cumulative,
}
LATER_IMPLEMENTATIONS = {
  "loop": _label_order._later_groups_loop,
  "cumulative": _label_order._later_groups_cumulative,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def implementation(request, monkeypatch):
  """Runs a test once with each way of summing over groups.

  XLA:CPU takes the loops and GPU/TPU the cumulative ops; both run here.
  """
  earlier = IMPLEMENTATIONS[request.param]
  monkeypatch.setattr(
    _label_order,
    "earlier_groups_logsumexp",
    lambda x, keys, reverse=False: earlier(x, keys, reverse),
  )
  monkeypatch.setattr(
    _label_order,
    "later_groups_weighted_sum",
    LATER_IMPLEMENTATIONS[request.param],
  )
  return request.param


def _earlier_groups_reference(x, keys, reverse):
  out = np.full(x.shape, -np.inf)
  for r in range(x.shape[0]):
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    seen = []
    for k in order:
      earlier = [x[r, j] for j in seen if keys[r, j] != keys[r, k]]
      if earlier:
        out[r, k] = np.logaddexp.reduce(earlier)
      seen.append(k)
  return out


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_earlier_groups_logsumexp_matches_a_loop_over_groups(name, reverse):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 11)) * 3
  x[1, 4] = x[3, :2] = -np.inf
  keys = np.sort(rng.integers(0, 4, size=(5, 11)), axis=1).astype(float)
  keys[2] = 1.0
  keys[4, -3:] = np.inf
  got = IMPLEMENTATIONS[name](jnp.asarray(x), jnp.asarray(keys), reverse)
  np.testing.assert_allclose(
    got, _earlier_groups_reference(x, keys, reverse), rtol=1e-6
  )


@pytest.mark.parametrize("name", sorted(LATER_IMPLEMENTATIONS))
def test_later_groups_weighted_sum_matches_a_loop_over_groups(name):
  rng = np.random.default_rng(1)
  keys = np.sort(rng.integers(0, 4, size=(5, 11)), axis=1).astype(np.int32)
  keys[2] = 1
  e = rng.uniform(0, 300, size=(5, 11))  # exp(e) alone overflows float32
  t = -e.max(axis=1, keepdims=True) - rng.uniform(0, 5, size=(5, 11))
  c = rng.normal(size=(5, 11))
  c[0, 3:] = 0.0
  expected = np.zeros((5, 11))
  for r in range(5):
    for k in range(11):
      later = keys[r] > keys[r, k]
      expected[r, k] = np.sum(c[r, later] * np.exp(t[r, k] + e[r, later]))
  cast = lambda a: jnp.asarray(a, jnp.float32)
  got = LATER_IMPLEMENTATIONS[name](
    cast(t), cast(e), cast(c), jnp.asarray(keys)
  )
  np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)


def _direct_log_likelihood(scores, labels, valid, item_weights):
  """``sum_i w_i log p_i`` from the ``[n, n]`` comparison matrix."""
  competes = (labels[..., None, :] < labels[..., :, None]) & valid[..., None, :]
  competes = competes | jnp.eye(scores.shape[-1], dtype=bool)
  pairs = jnp.where(competes, scores[..., None, :], -jnp.inf)
  log_p = scores - jax.nn.logsumexp(pairs, axis=-1)
  return jnp.sum(jnp.where(valid, item_weights * log_p, 0.0), axis=-1)


def _inputs(seed, shape=(3, 10), dtype=np.float64):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=shape) * 3
  labels = rng.integers(0, 4, size=shape).astype(float)
  valid = rng.random(shape) > 0.25
  weights = rng.normal(size=shape)  # negative weights test the sign split
  cast = lambda a: jnp.asarray(a.astype(dtype))
  return cast(scores), cast(labels), jnp.asarray(valid), cast(weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_and_gradients_equal_the_direct_form(seed, implementation):
  with jax.enable_x64():
    scores, labels, valid, weights = _inputs(seed, shape=(2, 3, 10))
    list_weights = jnp.arange(1.0, 7.0).reshape(2, 3)

    def total(fn):
      return lambda s, w: jnp.sum(list_weights * fn(s, labels, valid, w))

    ours = total(lambda *a: _label_order.weighted_log_likelihood(*a)[0])
    direct = total(_direct_log_likelihood)
    np.testing.assert_allclose(ours(scores, weights), direct(scores, weights))
    for got, expected in zip(
      jax.grad(ours, (0, 1))(scores, weights),
      jax.grad(direct, (0, 1))(scores, weights),
    ):
      np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_gradient_matches_float64_central_differences(implementation):
  with jax.enable_x64():
    scores, labels, valid, weights = _inputs(3, shape=(12,))
    fn = jax.jit(
      lambda s: _label_order.weighted_log_likelihood(s, labels, valid, weights)[
        0
      ]
    )
    grad = np.asarray(jax.grad(fn)(scores))
    step = 1e-6
    for i in range(scores.shape[0]):
      bump = jnp.zeros_like(scores).at[i].set(step)
      numeric = (fn(scores + bump) - fn(scores - bump)) / (2 * step)
      np.testing.assert_allclose(grad[i], numeric, rtol=1e-6, atol=1e-8)


def test_gradient_is_exact_far_from_zero_and_finite_far_apart(implementation):
  # Around -300 every 1 / D overflows float32, so the backward pass must stay
  # in log space; 300 nats apart every entry underflows to exactly 0. The
  # tolerance is float32's spacing at 300 (3e-5), which the value has too.
  labels = jnp.array([0.0, 1.0, 2.0, 1.0])
  valid = jnp.ones(4, bool)
  weights = jnp.array([1.0, 2.0, 3.0, -1.0])
  fn = lambda s: _label_order.weighted_log_likelihood(
    s, labels, valid, weights
  )[0]
  scores = jnp.array([-3.0, 0.0, 1.0, -1.0]) - 300.0
  with jax.enable_x64():
    expected = jax.grad(
      lambda s: _direct_log_likelihood(s, labels, valid, weights)
    )(np.asarray(scores, np.float64))
  np.testing.assert_allclose(jax.grad(fn)(scores), expected, rtol=1e-4)
  value, grad = jax.value_and_grad(fn)(jnp.array([-600.0, -300.0, 0.0, -350.0]))
  assert np.isfinite(value)
  np.testing.assert_array_equal(grad, jnp.zeros(4))


def test_second_derivatives_equal_the_direct_form(implementation):
  with jax.enable_x64():
    scores, labels, valid, weights = _inputs(4, shape=(8,))
    # Reverse over reverse: the gradient is hand-written (no forward mode).
    # Compiled whole: op by op, the nested loops compile once per primitive.
    ours = jax.jit(
      jax.jacrev(
        jax.grad(
          lambda s: _label_order.weighted_log_likelihood(
            s, labels, valid, weights
          )[0]
        )
      )
    )(scores)
    direct = jax.hessian(
      lambda s: _direct_log_likelihood(s, labels, valid, weights)
    )(scores)
    np.testing.assert_allclose(ours, direct, rtol=1e-9, atol=1e-12)


def test_masked_items_get_zero_gradient_and_add_nothing(implementation):
  scores, labels, valid, weights = _inputs(5, dtype=np.float32)
  fn = lambda s: jnp.sum(
    _label_order.weighted_log_likelihood(s, labels, valid, weights)[0]
  )
  grad = jax.grad(fn)(scores)
  np.testing.assert_array_equal(jnp.where(valid, 0.0, grad), 0.0)
  moved = jnp.where(valid, scores, 1e3)
  np.testing.assert_allclose(fn(moved), fn(scores), rtol=1e-6)


def test_lists_with_no_valid_item_and_an_empty_list_axis_give_zero():
  for shape in [(2, 5), (2, 0)]:
    scores = jnp.ones(shape)
    fn = lambda s: _label_order.weighted_log_likelihood(
      s, jnp.zeros(shape), jnp.zeros(shape, bool), jnp.ones(shape)
    )
    total, has_valid = fn(scores)
    np.testing.assert_array_equal(total, jnp.zeros(2))
    np.testing.assert_array_equal(has_valid, jnp.zeros(2, bool))
    grad = jax.grad(lambda s: jnp.sum(fn(s)[0]))(scores)
    np.testing.assert_array_equal(grad, jnp.zeros(shape))


def test_has_valid_tells_lists_with_a_valid_item_whatever_its_label():
  labels = jnp.array([[jnp.inf, 1.0], [jnp.nan, 0.0], [-jnp.inf, 2.0]])
  valid = jnp.array([[True, False], [True, False], [False, False]])
  _, has_valid = _label_order.weighted_log_likelihood(
    jnp.zeros((3, 2)), labels, valid, jnp.ones((3, 2))
  )
  np.testing.assert_array_equal(has_valid, [True, True, False])


def test_doctests_pass():
  result = doctest.testmod(_label_order, extraglobs={"jnp": jnp})
  assert result.attempted and not result.failed
