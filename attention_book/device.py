"""Choose the device every page runs on: the GPU when there is one, the CPU otherwise."""

from __future__ import annotations

import os
import warnings

import torch

__all__ = ["DEVICE_ENV_VAR", "get_device"]

#: Name of the environment variable that overrides every other choice of device.
DEVICE_ENV_VAR = "ATTENTION_BOOK_DEVICE"

_SUPPORTED = "'cpu', 'cuda', 'cuda:<index>' or 'mps'"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and bool(mps.is_available())


def _is_available(device: torch.device) -> bool:
    if device.type == "cuda":
        index = device.index or 0
        return bool(torch.cuda.is_available()) and index < torch.cuda.device_count()
    if device.type == "mps":
        return _mps_available()
    return True  # the CPU is always there


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device to compute on, falling back to the CPU when an accelerator is absent.

    The rule, in order:

    1. the environment variable ``ATTENTION_BOOK_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``,
       ``mps``), when set and not empty, wins over everything;
    2. otherwise ``prefer``, when given;
    3. otherwise CUDA if available, then MPS if available, then the CPU.

    Asking (through 1 or 2) for an accelerator that this machine does not have never raises:
    it returns the CPU and emits a ``UserWarning``, so a page written on a GPU machine
    still builds on a laptop.

    Args:
        prefer: The device to use when the environment variable is not set, for example
            ``"cpu"`` or ``"cuda:1"``. ``None`` picks the best available device.

    Returns:
        The chosen :class:`torch.device`.

    Raises:
        ValueError: If ``prefer`` or the environment variable is not a device name this
            package knows (``'cpu'``, ``'cuda'``, ``'cuda:<index>'`` or ``'mps'``).

    Example:
        >>> device = get_device()
        >>> torch.zeros(2, device=device).device.type == device.type
        True
    """
    env_value = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if env_value:
        requested, source = env_value, f"environment variable {DEVICE_ENV_VAR}"
    elif prefer is not None:
        requested, source = prefer, "prefer"
    else:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in {"cpu", "cuda", "mps"}:
        msg = f"{source} must name a device: {_SUPPORTED}; got {requested!r}"
        raise ValueError(msg)
    if _is_available(device):
        return device
    warnings.warn(
        f"{source} asks for {requested!r}, which this machine does not have; using the CPU",
        UserWarning,
        stacklevel=2,
    )
    return torch.device("cpu")
