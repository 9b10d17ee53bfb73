"""The top-level namespace: version and re-exports."""

from __future__ import annotations

import importlib

import attention_book


def test_version() -> None:
    assert attention_book.__version__ == "0.1.0"


def test_every_name_in_all_is_importable_and_documented() -> None:
    names = set(attention_book.__all__)
    assert len(names) == len(attention_book.__all__)
    for name in names - {"__version__", "DEVICE_ENV_VAR", "KERNELS", "KernelName"}:
        obj = getattr(attention_book, name)
        assert obj.__doc__, name
    expected = {
        "get_device",
        "masked_softmax",
        "valid_lens_to_mask",
        "causal_mask",
        "scaled_dot_product_attention",
        "DotProductAttention",
        "AdditiveAttention",
        "MultiHeadAttention",
        "AttentionOutput",
        "sinusoidal_positions",
        "PositionalEncoding",
        "gaussian_kernel",
        "boxcar_kernel",
        "epanechnikov_kernel",
        "triangular_kernel",
        "nadaraya_watson",
        "NadarayaWatsonRegression",
        "leave_one_out",
        "train_nadaraya_watson",
        "kernel_regression_data",
        "KernelRegressionData",
        "true_function",
        "show_heatmaps",
        "rotary_embedding",
        "RotaryEmbedding",
        "LearnedPositionalEmbedding",
    }
    assert expected <= names


def test_part_two_lives_in_the_models_subpackage() -> None:
    models = importlib.import_module("attention_book.models")
    expected = {
        "translation_data", "TranslationData", "Vocab", "bleu",
        "Seq2SeqEncoder", "AttentionDecoder", "Seq2Seq", "Seq2SeqOutput",
        "greedy_translate", "Translation", "train_seq2seq",
        "TransformerEncoderBlock", "TransformerDecoderBlock", "DecoderOutput",
        "Transformer", "TransformerOutput",
    }  # fmt: skip
    assert expected <= set(models.__all__)
    aliases = {"ActivationName", "QueryName", "ScoreName"}  # Literal types: no docstring
    for name in set(models.__all__) - aliases:
        assert getattr(models, name).__doc__, name
    # the core never imports the subpackage: Part I works without it
    core = importlib.import_module("attention_book.multihead")
    assert "attention_book.models" not in vars(core)


def test_public_names_come_from_their_modules() -> None:
    for module_name, names in {
        "masking": ["masked_softmax", "valid_lens_to_mask", "causal_mask"],
        "scoring": ["scaled_dot_product_attention", "DotProductAttention"],
        "multihead": ["MultiHeadAttention"],
    }.items():
        module = importlib.import_module(f"attention_book.{module_name}")
        for name in names:
            assert getattr(module, name) is getattr(attention_book, name)
