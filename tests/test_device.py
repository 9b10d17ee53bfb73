"""get_device: the environment variable wins, then prefer, then CUDA, MPS, CPU."""

from __future__ import annotations

import pytest
import torch

from attention_book import DEVICE_ENV_VAR, get_device


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A machine with neither CUDA nor MPS and no ATTENTION_BOOK_DEVICE, to be adjusted."""
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    return monkeypatch


def with_cuda(machine: pytest.MonkeyPatch, count: int = 1) -> None:
    machine.setattr(torch.cuda, "is_available", lambda: True)
    machine.setattr(torch.cuda, "device_count", lambda: count)


def test_env_var_name() -> None:
    assert DEVICE_ENV_VAR == "ATTENTION_BOOK_DEVICE"


def test_cpu_when_nothing_else(machine: pytest.MonkeyPatch) -> None:
    assert get_device() == torch.device("cpu")


def test_cuda_first_then_mps(machine: pytest.MonkeyPatch) -> None:
    machine.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device() == torch.device("mps")
    with_cuda(machine)
    assert get_device() == torch.device("cuda")


def test_prefer_is_used(machine: pytest.MonkeyPatch) -> None:
    with_cuda(machine, count=2)
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("cuda:1") == torch.device("cuda:1")


def test_env_var_wins_over_prefer(machine: pytest.MonkeyPatch) -> None:
    with_cuda(machine)
    machine.setenv(DEVICE_ENV_VAR, "cpu")
    assert get_device("cuda") == torch.device("cpu")
    assert get_device() == torch.device("cpu")


def test_empty_env_var_is_ignored(machine: pytest.MonkeyPatch) -> None:
    machine.setenv(DEVICE_ENV_VAR, " ")
    with_cuda(machine)
    assert get_device() == torch.device("cuda")


@pytest.mark.parametrize("name", ["cuda", "cuda:1", "mps"])
def test_absent_accelerator_from_env_falls_back_with_a_warning(
    machine: pytest.MonkeyPatch, name: str
) -> None:
    machine.setenv(DEVICE_ENV_VAR, name)
    with pytest.warns(
        UserWarning, match=rf"ATTENTION_BOOK_DEVICE asks for '{name}'.*using the CPU"
    ):
        assert get_device("cuda") == torch.device("cpu")


def test_absent_device_index_falls_back(machine: pytest.MonkeyPatch) -> None:
    with_cuda(machine, count=1)
    with pytest.warns(UserWarning, match="prefer asks for 'cuda:1'"):
        assert get_device("cuda:1") == torch.device("cpu")
    assert get_device("cuda:0") == torch.device("cuda:0")


def test_mps_when_available(machine: pytest.MonkeyPatch) -> None:
    machine.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device("mps") == torch.device("mps")


@pytest.mark.parametrize("name", ["gpu", "xpu", "cuda:x", ""])
def test_unknown_names_are_rejected(machine: pytest.MonkeyPatch, name: str) -> None:
    with pytest.raises(
        ValueError, match=r"prefer must name a device: 'cpu', 'cuda', 'cuda:<index>' or 'mps'; got"
    ):
        get_device(name)


def test_unknown_env_value_names_the_variable(machine: pytest.MonkeyPatch) -> None:
    machine.setenv(DEVICE_ENV_VAR, "tpu")
    with pytest.raises(
        ValueError,
        match=r"environment variable ATTENTION_BOOK_DEVICE must name a device.*got 'tpu'",
    ):
        get_device()


def test_the_real_machine_gives_a_usable_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    device = get_device()
    assert torch.ones(2, device=device).sum().item() == 2.0
