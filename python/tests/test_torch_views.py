"""The PyTorch example's binding of parameters and gradients to the buffers that ferrops pulls
into and pushes from, checked without a cluster. Skipped where torch does not import."""

import sys

import numpy as np
import pytest

from conftest import TESTS

torch = pytest.importorskip(
    "torch", reason="torch is not importable; docs/python.md says how to install it")
sys.path.insert(0, str(TESTS.parent / "examples"))
import torch_digits  # noqa: E402


class Args:
    model = "cnn"
    seed = 7


def batch():
    generator = torch.Generator().manual_seed(3)
    return torch.rand(8, 64, generator=generator), torch.arange(8) % 10


def test_writes_into_the_buffer_are_the_parameters_and_backward_fills_the_push_buffer():
    model = torch_digits.initial_model(Args)
    reference = torch_digits.initial_model(Args)  # the same weights, ordinary tensors
    weights, grads = torch_digits.bind_to_buffers(model)
    np.testing.assert_array_equal(
        weights, torch.cat([p.detach().ravel() for p in reference.parameters()]).numpy())

    weights *= 0.5  # as pull_into writes: in place, into the flat buffer
    with torch.no_grad():
        for p in reference.parameters():
            p.mul_(0.5)
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.equal(ours.detach(), theirs.detach())

    x, y = batch()
    loss = torch.nn.CrossEntropyLoss()
    grads.fill(0.0)
    loss(model(x), y).backward()
    loss(reference(x), y).backward()
    expected = torch.cat([p.grad.ravel() for p in reference.parameters()]).numpy()
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(grads, expected, rtol=1e-5, atol=1e-7)
    torch_digits.check_views(model, weights, grads)


def test_check_views_notices_a_gradient_outside_the_buffer():
    model = torch_digits.initial_model(Args)
    weights, grads = torch_digits.bind_to_buffers(model)
    last = list(model.parameters())[-1]
    last.grad = torch.zeros_like(last)  # a new tensor, not a view of `grads`
    with pytest.raises(RuntimeError, match="gradient tensor no longer lies"):
        torch_digits.check_views(model, weights, grads)
