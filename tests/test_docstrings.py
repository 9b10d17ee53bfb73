"""Every docstring example of the package runs and prints what it says.

The examples also run under ``pytest --doctest-modules attention_book``; this test makes
sure they run in ``nox -s tests`` too, whose test path is ``tests/`` only.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import attention_book
import attention_book.interpret
import attention_book.models
import attention_book.variants

# every module, subpackages (attention_book.models, ...) and their modules included
MODULES = sorted(
    info.name for info in pkgutil.walk_packages(attention_book.__path__, prefix="attention_book.")
)
# the namespaces whose __all__ is public: the top level and each subpackage
NAMESPACES = [
    attention_book,
    attention_book.models,
    attention_book.variants,
    attention_book.interpret,
]


@pytest.mark.parametrize("name", ["attention_book", *MODULES])
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def public_objects() -> list[tuple[str, object]]:
    return [
        (name, getattr(namespace, name))
        for namespace in NAMESPACES
        for name in namespace.__all__
        if inspect.isfunction(getattr(namespace, name)) or inspect.isclass(getattr(namespace, name))
    ]


def test_every_subpackage_is_a_namespace_here() -> None:
    subpackages = {
        info.name for info in pkgutil.iter_modules(attention_book.__path__) if info.ispkg
    }
    assert subpackages == {n.__name__.rsplit(".", 1)[-1] for n in NAMESPACES[1:]}


@pytest.mark.parametrize(("name", "obj"), public_objects(), ids=[n for n, _ in public_objects()])
def test_every_public_function_and_class_has_an_example(name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    assert ">>> " in doc, f"{name} has no example"


FORMULA_FREE = {
    "AttentionOutput",
    "KernelRegressionData",
    "get_device",
    "plot_kernel_regression",
    "show_heatmaps",
    # attention_book.models
    "DecoderOutput",
    "Seq2SeqOutput",
    "TransformerOutput",
    "Translation",
    "TranslationData",
    "Vocab",
}


@pytest.mark.parametrize(
    ("name", "obj"),
    [(n, o) for n, o in public_objects() if n not in FORMULA_FREE],
    ids=[n for n, _ in public_objects() if n not in FORMULA_FREE],
)
def test_every_computation_states_its_formula(name: str, obj: object) -> None:
    assert ".. math::" in (inspect.getdoc(obj) or ""), f"{name} has no formula"
