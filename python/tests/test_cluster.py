"""The binding against real local clusters (scheduler, servers and workers as processes)."""

import importlib

import pytest

from conftest import TESTS


def torch_or_skip():
    """Skips the calling test, saying why, unless torch imports in this interpreter (the one
    the workers run); CI's default virtual environment has numpy only."""
    try:
        importlib.import_module("torch")
    except ImportError as error:
        pytest.skip(f"torch is not importable ({error}); docs/python.md says how to install it")


def test_sums_from_two_workers_are_exact(cluster):
    out = cluster.run("sums.py", servers=2, workers=2).stdout
    assert out.count("summed exactly") == 2


def test_bounded_delay_pulls_see_what_they_must(cluster):
    out = cluster.run("bounded_delay.py", "1", servers=2, workers=2).stdout
    assert out.count("clock 6") == 2


def test_sequential_is_bounded_delay_zero(cluster):
    cluster.run("bounded_delay.py", "0", servers=1, workers=3)


def test_wrong_arguments_raise_ferrops_errors(cluster):
    out = cluster.run("errors.py", servers=1, workers=1).stdout
    assert "errors: all raised as expected" in out


def test_pull_into_writes_in_place_without_copies(cluster):
    out = cluster.run("zero_copy.py", servers=2, workers=1).stdout
    assert "pull_into:" in out


def test_async_push_pull_and_context_manager(cluster):
    out = cluster.run("async_ops.py", servers=2, workers=2).stdout
    assert out.count("async push/pull ok") == 2


def test_a_failing_worker_fails_the_job(cluster):
    result = cluster.run("fails.py", servers=1, workers=2, expect_ok=False)
    assert result.returncode != 0
    assert "ferrops.KeysError" in result.stdout


def test_the_gil_is_released_while_waiting(cluster):
    out = cluster.run("gil.py", servers=1, workers=2).stdout
    assert "while another thread counted" in out


def test_mlp_example_trains_through_server_side_adam(cluster):
    example = TESTS.parent / "examples" / "mlp_numpy.py"
    out = cluster.run(str(example), "--epochs", "10", "--min-accuracy", "0.85",
                      servers=2, workers=2).stdout
    assert "test accuracy" in out


def test_torch_example_trains_a_cnn_through_server_side_adam(cluster):
    torch_or_skip()
    example = TESTS.parent / "examples" / "torch_digits.py"
    out = cluster.run(str(example), "--epochs", "10", "--min-accuracy", "0.85",
                      servers=2, workers=2).stdout
    assert "server-side adam): test accuracy" in out
    assert "stayed views of the pulled and pushed buffers" in out
    assert "one process, torch.optim.Adam: test accuracy" in out


def test_torch_example_with_server_side_adagrad(cluster):
    torch_or_skip()
    example = TESTS.parent / "examples" / "torch_digits.py"
    out = cluster.run(str(example), "--model", "mlp", "--rule", "adagrad", "--epochs", "10",
                      "--lr", "0.05", "--min-accuracy", "0.85", servers=1, workers=2).stdout
    assert "server-side adagrad): test accuracy" in out
    assert "one process, torch.optim.Adagrad: test accuracy" in out


def test_a_checkpoint_restores_values_and_adam_state_on_other_servers(cluster, tmp_path):
    saved = cluster.run("checkpoint.py", "save", str(tmp_path), servers=2, workers=1).stdout
    resumed = cluster.run("checkpoint.py", "resume", str(tmp_path), servers=3, workers=1,
                          local_args=("--restore", str(tmp_path))).stdout
    def digest(out: str) -> str:
        return out.split("values after the fourth step ")[1].split()[0]

    assert digest(saved) == digest(resumed)
