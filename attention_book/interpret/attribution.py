r"""Gradient attribution: gradient × input, integrated gradients and Grad-CAM.

Attention weights say where a layer reads; gradients say how much the output would move if
an input moved. Three classic methods, each in a few lines:

- **gradient × input**: :math:`x_i \, \partial F / \partial x_i`, one backward pass;
- **integrated gradients** (Sundararajan et al., 2017): the gradient averaged along the
  straight path from a baseline :math:`x'` to the input, times :math:`x - x'`; the
  attributions add up to :math:`F(x) - F(x')` (completeness);
- **Grad-CAM** (Selvaraju et al., 2017): a convolutional layer's channels weighted by the
  mean gradient of the class score, summed, and clipped at 0.

They agree with Captum's ``InputXGradient``, ``IntegratedGradients`` (``method="riemann_middle"``)
and ``LayerGradCam`` (``relu_attributions=True``). None of them changes the caller's tensors or
model, and the attributions come back without a graph.

Example:
    >>> weights = torch.tensor([1.0, -2.0, 3.0])
    >>> forward = lambda x: x @ weights  # linear: attributions are exactly x * weights
    >>> integrated_gradients(forward, torch.ones(1, 3))
    tensor([[ 1., -2.,  3.]])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attention_book._checks import (
    check_broadcasts_to,
    check_callable,
    check_float,
    check_instance,
    check_int,
    check_ndim,
    check_same_dtype,
    fmt_shape,
)

__all__ = ["grad_cam", "gradient_times_input", "integrated_gradients"]


def _check_target(target: object, batch: int) -> int | Tensor | None:
    """``None``, an ``int`` of at least 0, or an integer tensor ``(N,)``."""
    if target is None or (isinstance(target, int) and not isinstance(target, bool)):
        return target if target is None else check_int("target", target, minimum=0)
    if not isinstance(target, Tensor):
        msg = f"target must be None, an int or an integer tensor (N,); got {type(target).__name__}"
        raise TypeError(msg)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        msg = f"target must be an integer tensor of output columns; got dtype {target.dtype}"
        raise TypeError(msg)
    if target.shape != (batch,):
        msg = f"target must have shape (N,) = ({batch},); got {fmt_shape(target.shape)}"
        raise ValueError(msg)
    return target


def _pick(outputs: object, target: int | Tensor | None, rows: int, repeats: int) -> Tensor:
    """The output each example is explained by: ``(rows,)`` from ``forward``'s output."""
    if not isinstance(outputs, Tensor) or outputs.ndim == 0 or outputs.shape[0] != rows:
        got = fmt_shape(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        msg = f"forward must return one row per example, ({rows}, ...); got {got}"
        raise ValueError(msg)
    if target is None:
        if outputs.numel() != rows:
            msg = (
                "target must be given when forward returns several values per example; "
                f"got output of shape {fmt_shape(outputs.shape)}"
            )
            raise ValueError(msg)
        return outputs.reshape(rows)
    if outputs.ndim != 2:
        msg = f"forward must return (N, C) scores to pick a target from; got {fmt_shape(outputs.shape)}"
        raise ValueError(msg)
    columns = target if isinstance(target, int) else int(target.max()) if target.numel() else 0
    low = target if isinstance(target, int) else int(target.min()) if target.numel() else 0
    if low < 0 or columns >= outputs.shape[1]:
        msg = f"target must lie in [0, C) = [0, {outputs.shape[1]}); got {target}"
        raise ValueError(msg)
    if isinstance(target, int):
        return outputs[:, target]
    index = target.to(outputs.device).repeat(repeats)  # step-major, like the inputs
    return outputs.gather(1, index[:, None]).squeeze(1)  # (rows, C) -> (rows,)


def integrated_gradients(
    forward: Callable[[Tensor], Tensor],
    inputs: Tensor,
    baselines: Tensor | None = None,
    *,
    target: int | Tensor | None = None,
    steps: int = 50,
) -> Tensor:
    r"""Integrated gradients: the gradient averaged from a baseline to the input, times the step.

    .. math::

        \operatorname{IG}_i(x) = (x_i - x'_i) \int_0^1
            \frac{\partial F\bigl(x' + \alpha (x - x')\bigr)}{\partial x_i} \, d\alpha
        \approx (x_i - x'_i) \, \frac1m \sum_{k=1}^{m}
            \frac{\partial F\bigl(x' + \tfrac{k - 1/2}{m} (x - x')\bigr)}{\partial x_i}

    The integral is taken by the midpoint rule with :math:`m` = ``steps`` points (Captum's
    ``method="riemann_middle"``), all of them in one call of ``forward`` on a batch of
    ``steps * N`` examples. Completeness, :math:`\sum_i \operatorname{IG}_i(x) \approx
    F(x) - F(x')`, holds up to the quadrature error, which falls like :math:`1/m^2`.

    Args:
        forward: Maps a batch ``(M, ...)`` to scores ``(M, C)``, or to one value per example
            ``(M,)`` or ``(M, 1)``; examples must not interact.
        inputs: ``(N, ...)`` floating point, the examples to explain.
        baselines: The starting points :math:`x'`, broadcastable to ``inputs``; ``None``
            means zeros.
        target: The output column explained: an ``int`` for all examples, an integer tensor
            ``(N,)`` with one per example, or ``None`` when ``forward`` returns one value per
            example.
        steps: The number of points :math:`m` on the path (``1`` or more).

    Returns:
        ``(N, ...)`` like ``inputs``, without a graph.

    Raises:
        TypeError: If ``forward`` is not callable, ``inputs`` or ``baselines`` not floating
            point of one dtype, ``target`` of the wrong type, or ``steps`` not an int.
        ValueError: If ``baselines`` does not broadcast to ``inputs``, ``steps`` is below 1,
            ``target`` is out of range or missing for several outputs per example, or
            ``forward`` does not return one row per example.

    Example:
        >>> forward = lambda x: (x**2).sum(dim=1)  # F(x) = sum of squares, F(0) = 0
        >>> inputs = torch.tensor([[1.0, 2.0]])
        >>> integrated_gradients(forward, inputs)  # sums to F(x) - F(0) = 5
        tensor([[1., 4.]])
    """
    check_callable("forward", forward, "(M, ...) -> (M, C) or (M,)")
    x = check_float("inputs", inputs).detach()
    check_ndim("inputs", x, 1, "(N, ...)")
    base = torch.zeros_like(x) if baselines is None else check_float("baselines", baselines)
    check_same_dtype("baselines", base, "inputs", x)
    check_broadcasts_to("baselines", base, x.shape, "inputs (N, ...)")
    chosen = _check_target(target, x.shape[0])
    check_int("steps", steps, minimum=1)

    base = base.detach().expand_as(x)
    alphas = torch.linspace(0.5 / steps, 1 - 0.5 / steps, steps, dtype=x.dtype, device=x.device)
    alphas = alphas.view(steps, *[1] * x.ndim)  # (steps, 1, ..., 1)
    path = (base + alphas * (x - base)).requires_grad_(True)  # (steps, N, ...)
    with torch.enable_grad():
        outputs = forward(path.flatten(0, 1))  # (steps * N, ...) -> (steps * N, C)
        picked = _pick(outputs, chosen, steps * x.shape[0], steps)
        (grads,) = torch.autograd.grad(picked.sum(), path)  # (steps, N, ...)
    return (x - base) * grads.mean(dim=0)


def gradient_times_input(
    forward: Callable[[Tensor], Tensor],
    inputs: Tensor,
    *,
    target: int | Tensor | None = None,
) -> Tensor:
    r"""Gradient × input: each input times the gradient of the explained output with respect to it.

    .. math::

        a_i = x_i \, \frac{\partial F(x)}{\partial x_i}

    For a linear :math:`F` without bias the attributions add up to :math:`F(x)`; in general
    they are a first-order guess of each input's share. Same as Captum's ``InputXGradient``.

    Args:
        forward: Maps a batch ``(N, ...)`` to scores ``(N, C)``, or to one value per example
            ``(N,)`` or ``(N, 1)``; examples must not interact.
        inputs: ``(N, ...)`` floating point, the examples to explain.
        target: The output column explained: an ``int``, an integer tensor ``(N,)``, or
            ``None`` when ``forward`` returns one value per example.

    Returns:
        ``(N, ...)`` like ``inputs``, without a graph.

    Raises:
        TypeError: If ``forward`` is not callable, ``inputs`` not floating point, or
            ``target`` of the wrong type.
        ValueError: If ``target`` is out of range or missing for several outputs per example,
            or ``forward`` does not return one row per example.

    Example:
        >>> forward = lambda x: (x**2).sum(dim=1)
        >>> gradient_times_input(forward, torch.tensor([[1.0, 2.0]]))  # x * 2x
        tensor([[2., 8.]])
    """
    check_callable("forward", forward, "(N, ...) -> (N, C) or (N,)")
    check_float("inputs", inputs)
    check_ndim("inputs", inputs, 1, "(N, ...)")
    chosen = _check_target(target, inputs.shape[0])
    x = inputs.detach().requires_grad_(True)  # a new leaf: the caller's tensor is untouched
    with torch.enable_grad():
        picked = _pick(forward(x), chosen, x.shape[0], 1)
        (grads,) = torch.autograd.grad(picked.sum(), x)
    return x.detach() * grads


def grad_cam(model: nn.Module, layer: nn.Module, inputs: Tensor, target: int) -> Tensor:
    r"""Grad-CAM: a layer's channels weighted by the mean gradient of one class score.

    .. math::

        w_c = \frac{1}{h w} \sum_{u, v} \frac{\partial y_{\text{target}}}{\partial A_{c, u, v}},
        \qquad
        \operatorname{CAM}_{u, v} = \operatorname{ReLU}\Bigl(\sum_c w_c \, A_{c, u, v}\Bigr)

    :math:`A` is ``layer``'s output ``(C, h, w)`` for one example and :math:`y` the model's
    scores. The map has the layer's resolution; ``torch.nn.functional.interpolate`` brings
    it to the image's. A forward hook on ``layer`` lends its output and is removed before
    the function returns, even on an error; the model's parameters, gradients and
    train/eval mode are left as they are (call ``model.eval()`` first if it has dropout or
    batch norm). Same as Captum's ``LayerGradCam(model, layer).attribute(inputs, target,
    relu_attributions=True)`` with the channel dim squeezed.

    Args:
        model: Maps ``inputs`` to scores ``(N, num_classes)``.
        layer: A module inside ``model`` whose output is ``(N, C, h, w)``, run once per
            forward pass (usually the last convolutional block).
        inputs: ``(N, ...)`` floating point, the model's input (images ``(N, 3, H, W)``).
        target: The class explained, in ``[0, num_classes)``.

    Returns:
        ``(N, h, w)``, non-negative, without a graph.

    Raises:
        TypeError: If ``model`` or ``layer`` is not a module, ``inputs`` not floating point,
            ``target`` not an int, or ``layer`` returns something other than a tensor.
        ValueError: If ``layer`` does not run exactly once, its output is not 4-D, the
            model's scores are not ``(N, num_classes)`` or ``target`` is out of range.

    Example:
        >>> conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        >>> _ = conv.weight.data.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        >>> head = nn.Linear(8, 1, bias=False)  # class 0 scores the sum of both channels
        >>> _ = head.weight.data.fill_(1.0)
        >>> model = nn.Sequential(conv, nn.Flatten(), head)
        >>> grad_cam(model, conv, torch.ones(1, 1, 2, 2), target=0)  # channels cancel
        tensor([[[0., 0.],
                 [0., 0.]]])
    """
    check_instance("model", model, nn.Module)
    check_instance("layer", layer, nn.Module)
    check_float("inputs", inputs)
    check_int("target", target, minimum=0)
    activations: list[Tensor] = []

    def lend_output(_module: nn.Module, _args: object, output: object) -> Tensor:
        if not isinstance(output, Tensor):
            msg = f"layer must return a tensor (N, C, h, w); got {type(output).__name__}"
            raise TypeError(msg)
        activation = output.detach().requires_grad_(True)  # the gradient is taken here
        activations.append(activation)
        return activation.clone()  # the model goes on with a copy it may change in place

    handle = layer.register_forward_hook(lend_output)
    try:
        with torch.enable_grad():
            scores = model(inputs)
    finally:
        handle.remove()
    if len(activations) != 1:
        msg = (
            f"layer must run exactly once in model's forward pass; it ran {len(activations)} times"
        )
        raise ValueError(msg)
    (A,) = activations
    if A.ndim != 4:
        msg = f"layer must output (N, C, h, w); got shape {fmt_shape(A.shape)}"
        raise ValueError(msg)
    picked = _pick(scores, target, inputs.shape[0], 1)  # (N,)
    (grads,) = torch.autograd.grad(picked.sum(), A)  # (N, C, h, w)
    channel_weights = grads.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    return torch.relu((channel_weights * A).sum(dim=1)).detach()  # (N, C, h, w) -> (N, h, w)
