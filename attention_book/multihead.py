"""Multi-head attention: H scaled dot-product attentions on learned projections, side by side."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attention_book._checks import (
    check_attention_inputs,
    check_int,
    check_ndim,
    check_probability,
    fmt_shape,
)
from attention_book.output import AttentionOutput
from attention_book.positional import RotaryEmbedding
from attention_book.scoring import scaled_dot_product_attention

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    r"""Multi-head attention, batch first, with PyTorch's projections and per-head weights.

    .. math::

        \operatorname{MultiHead}(Q, K, V) = [\mathbf h_1, \dots, \mathbf h_H] W_o,
        \qquad \mathbf h_i = \operatorname{Attention}(Q W_q^{(i)}, K W_k^{(i)},
        V W_v^{(i)})

    The projections ``q_proj``, ``k_proj``, ``v_proj`` map queries, keys and values to
    ``embed_dim`` features, which are split into ``H = num_heads`` heads of ``embed_dim / H``
    features each; every head runs :func:`scaled_dot_product_attention`, the heads are
    concatenated and ``out_proj`` mixes them. :meth:`from_torch` copies the weights of a
    :class:`torch.nn.MultiheadAttention`, after which both compute the same thing.

    With ``rotary``, each head's queries and keys are rotated after the projections and
    before the dot products (RoFormer): query ``i`` at position ``i`` of ``0..L-1`` and
    key ``j`` at position ``j`` of ``0..S-1``, so the scores depend on ``j - i``, not on
    where the pair sits. The values are not rotated.

    Args:
        embed_dim: ``E``, features of the queries and of the output.
        num_heads: ``H``; must divide ``embed_dim``.
        dropout: Probability of dropping an attention weight during training.
        bias: Give the four projections a bias.
        kdim: Features of the keys; defaults to ``embed_dim``.
        vdim: Features of the values; defaults to ``embed_dim``.
        rotary: A :class:`RotaryEmbedding` of ``dim = embed_dim / num_heads`` applied to
            every head's queries and keys; ``None`` (default) adds no positions.

    Raises:
        ValueError: If ``num_heads < 1``, ``embed_dim % num_heads != 0``, a size is smaller
            than 1, ``dropout`` is outside ``[0, 1)`` or ``rotary.dim`` is not the head size.
        TypeError: If ``rotary`` is neither a :class:`RotaryEmbedding` nor ``None``.

    Example:
        >>> attention = MultiHeadAttention(embed_dim=8, num_heads=2, kdim=3, vdim=5)
        >>> query, key, value = torch.randn(4, 6, 8), torch.randn(4, 7, 3), torch.randn(4, 7, 5)
        >>> output, weights = attention(query, key, value, valid_lens=torch.tensor([1, 2, 3, 7]))
        >>> output.shape, weights.shape  # (N, L, E) and per-head (N, H, L, S)
        (torch.Size([4, 6, 8]), torch.Size([4, 2, 6, 7]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        rotary: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        check_int("embed_dim", embed_dim, minimum=1)
        check_int("num_heads", num_heads, minimum=1)
        if embed_dim % num_heads != 0:
            msg = (
                f"embed_dim must be divisible by num_heads = {num_heads}; "
                f"got embed_dim = {embed_dim}"
            )
            raise ValueError(msg)
        kdim = embed_dim if kdim is None else check_int("kdim", kdim, minimum=1)
        vdim = embed_dim if vdim is None else check_int("vdim", vdim, minimum=1)
        check_probability("dropout", dropout)
        self.embed_dim, self.num_heads, self.kdim, self.vdim = embed_dim, num_heads, kdim, vdim
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        given: object = rotary
        if given is not None and not isinstance(given, RotaryEmbedding):
            msg = f"rotary must be a RotaryEmbedding or None; got {type(given).__name__}"
            raise TypeError(msg)
        if rotary is not None and rotary.dim != self.head_dim:
            msg = (
                f"rotary must have dim = embed_dim / num_heads = {embed_dim} / {num_heads} "
                f"= {self.head_dim}; got dim = {rotary.dim}"
            )
            raise ValueError(msg)
        self.rotary = rotary

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of PyTorch's ``nn.MultiheadAttention`` into a new module.

        Works for either ``batch_first`` (this module is always batch first: transpose
        ``(L, N, E)`` inputs yourself), with or without bias, with packed ``in_proj_weight``
        or separate ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` (``kdim``/``vdim``).
        Masks have opposite polarities: PyTorch's ``key_padding_mask`` ``(N, S)`` is True
        where a key is *ignored*; pass ``attn_mask=~key_padding_mask[:, None, None, :]``.

        Args:
            module: The PyTorch module to copy.

        Returns:
            A module on the same device and with the same dtype, in the same train/eval mode.

        Raises:
            ValueError: If ``module`` uses ``add_bias_kv`` or ``add_zero_attn``.

        Example:
            >>> torch_mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
            >>> ours = MultiHeadAttention.from_torch(torch_mha).eval()
            >>> x = torch.randn(3, 5, 8)
            >>> torch.allclose(ours(x, x, x).output, torch_mha(x, x, x)[0], atol=1e-6)
            True
        """
        if module.bias_k is not None or module.add_zero_attn:
            msg = "module must not use add_bias_kv or add_zero_attn; got a module that does"
            raise ValueError(msg)
        reference = module.out_proj.weight
        new = cls(
            module.embed_dim,
            module.num_heads,
            dropout=module.dropout,
            bias=module.in_proj_bias is not None,
            kdim=module.kdim,
            vdim=module.vdim,
        ).to(device=reference.device, dtype=reference.dtype)
        if module._qkv_same_embed_dim:
            # (3 E, E) -> three (E, E) blocks, in the order q, k, v
            weights = module.in_proj_weight.chunk(3)
        else:
            weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
        projections = (new.q_proj, new.k_proj, new.v_proj)
        with torch.no_grad():
            for projection, weight in zip(projections, weights, strict=True):
                projection.weight.copy_(weight)
            new.out_proj.weight.copy_(module.out_proj.weight)
            if module.in_proj_bias is not None:
                for projection, bias in zip(projections, module.in_proj_bias.chunk(3), strict=True):
                    projection.bias.copy_(bias)
                new.out_proj.bias.copy_(module.out_proj.bias)
        return new.train(module.training)

    def _split_heads(self, x: Tensor) -> Tensor:
        # (N, L, E) -> (N, L, H, E/H) -> (N, H, L, E/H)
        return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim).transpose(-3, -2)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Tensor | None = None,
        *,
        valid_lens: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = True,
    ) -> AttentionOutput:
        """Attend from ``query (N, L, E)`` to ``key (N, S, kdim)`` and ``value (N, S, vdim)``.

        Extra leading batch dims are allowed: ``(N, ..., L, E)``.

        Args:
            query: ``(N, L, embed_dim)``.
            key: ``(N, S, kdim)``.
            value: ``(N, S, vdim)``.
            attn_mask: Boolean, True = may attend: ``(L, S)`` for every row and head,
                ``(N, L, S)`` per batch row (the same for every head; a mask with as many
                dims as ``query`` never lines its first dim up with the heads), or
                ``(N, H, L, S)`` and its broadcastable forms such as ``(N, 1, 1, S)`` for
                key padding.
            valid_lens: Integer ``(N,)`` or ``(N, L)``: the number of leading keys each batch
                row or query may see, the same for every head.
            is_causal: Let query ``i`` see keys ``0..i`` only.
            need_weights: Return the per-head weights; ``False`` takes the fused path.

        Returns:
            :class:`AttentionOutput` with ``output (N, L, embed_dim)`` and per-head
            ``weights (N, H, L, S)`` (``None`` when ``need_weights=False``).

        Raises:
            TypeError: If an input is not floating point or the mask is not boolean.
            ValueError: If a shape does not fit.
        """
        query, key, value, _ = check_attention_inputs(query, key, value, match_features=False)
        check_ndim("query", query, 3, "(N, L, E)")
        for name, tensor, size_name, size, rows in (
            ("query", query, "embed_dim", self.embed_dim, "L"),
            ("key", key, "kdim", self.kdim, "S"),
            ("value", value, "vdim", self.vdim, "S"),
        ):
            if tensor.shape[-1] != size:
                msg = (
                    f"{name} must have {size_name} = {size} features (N, {rows}, {size}); "
                    f"got shape {fmt_shape(tensor.shape)}"
                )
                raise ValueError(msg)
        if isinstance(attn_mask, Tensor) and attn_mask.dim() == query.dim():
            per_row = (*query.shape[:-1], key.shape[-2])  # (N, L, S)
            if any(m not in (1, n) for m, n in zip(attn_mask.shape, per_row, strict=True)):
                msg = (
                    f"attn_mask with {attn_mask.dim()} dims is a mask per batch row and must "
                    f"broadcast to (N, L, S) = {fmt_shape(per_row)}; "
                    f"got {fmt_shape(attn_mask.shape)}"
                )
                raise ValueError(msg)
            attn_mask = attn_mask.unsqueeze(-3)  # per batch row: (N, L, S) -> (N, 1, L, S)
        q = self._split_heads(self.q_proj(query))  # (N, L, E) -> (N, H, L, E/H)
        k = self._split_heads(self.k_proj(key))  # (N, S, kdim) -> (N, S, E) -> (N, H, S, E/H)
        v = self._split_heads(self.v_proj(value))  # (N, S, vdim) -> (N, S, E) -> (N, H, S, E/H)
        if self.rotary is not None:
            q = self.rotary(q)  # query i at position i: (N, H, L, E/H) -> (N, H, L, E/H)
            k = self.rotary(k)  # key j at position j: (N, H, S, E/H) -> (N, H, S, E/H)
        # (N, H, L, E/H) x (N, H, S, E/H) x (N, H, S, E/H) -> (N, H, L, E/H), (N, H, L, S)
        heads, weights = scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask,
            valid_lens=valid_lens,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            need_weights=need_weights,
        )
        # (N, H, L, E/H) -> (N, L, H, E/H) -> (N, L, E)
        concatenated = heads.transpose(-3, -2).flatten(-2)
        return AttentionOutput(self.out_proj(concatenated), weights)

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, "
            f"vdim={self.vdim}, dropout={self.dropout}"
        )
