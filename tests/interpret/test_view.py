"""attention_view: one self-contained <div>, weights as rounded JSON, the package's script, no URL."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from importlib.resources import files

import pytest
import torch

from attention_book.interpret import AttentionView, attention_view

TOKENS = ["the", "cat", "sat", "on", "mat"]


class Outline(HTMLParser):
    """Record the tags (depth, name, attrs) and the text of every <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[int, str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.depth = 0
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((self.depth, tag, dict(attrs)))
        self.depth += 1
        if tag == "script":
            self._in_script = dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self.scripts.append((self._in_script, data))
            self._in_script = None


def outline(html: str) -> Outline:
    parser = Outline()
    parser.feed(html)
    parser.close()
    return parser


def payload(html: str) -> dict[str, object]:
    parsed = outline(html)
    data = [text for attrs, text in parsed.scripts if attrs.get("type") == "application/json"]
    assert len(data) == 1
    result: dict[str, object] = json.loads(data[0])
    return result


def softmax(*shape: int) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape) * 2, dim=-1)


def test_one_div_holding_data_style_and_script() -> None:
    html = attention_view(softmax(2, 3, 5, 5), TOKENS)._repr_html_()
    parsed = outline(html)
    assert parsed.depth == 0, "unbalanced tags"
    top = [(tag, attrs) for depth, tag, attrs in parsed.tags if depth == 0]
    assert len(top) == 1
    tag, attrs = top[0]
    assert tag == "div"
    assert attrs["class"] == "ab-attn"
    assert re.fullmatch(r"ab-attn-[0-9a-f]{12}", attrs["id"] or "")
    assert html.startswith("<div")
    assert html.endswith("</div>")
    inner = [tag for depth, tag, _ in parsed.tags if depth == 1]
    assert inner == ["style", "div", "script", "script"]
    code = parsed.scripts[1][1]
    assert code.startswith("// The interactive attention view")
    # its own parent while it runs, else (classic Notebook's eval) the element of its id
    assert code.endswith(
        "(document.currentScript && document.currentScript.parentElement"
        f' || document.getElementById("{attrs["id"]}"));'
    )


def test_weights_as_json_rounded_to_three_decimals() -> None:
    weights = softmax(2, 3, 5, 7).double()
    keys = ["a", "b", "c", "d", "e", "f", "g"]
    view = attention_view(weights, TOKENS, key_tokens=keys, layer_names=["x", "y"])
    data = payload(view._repr_html_())
    assert data["tokens"] == TOKENS
    assert data["keys"] == keys
    assert data["layerNames"] == ["x", "y"]
    assert data["headNames"] == ["1", "2", "3"]
    assert data["scale"] == 1
    shown = torch.tensor(data["weights"], dtype=torch.float64)
    assert shown.shape == (2, 3, 5, 7)
    torch.testing.assert_close(shown, weights, atol=5e-4, rtol=0)
    assert torch.equal(shown, torch.round(shown, decimals=3))
    text = json.dumps(data["weights"])
    assert not re.search(r"\d\.\d{4}", text), "a weight with more than 3 decimals"


def test_whole_weights_are_written_as_integers() -> None:
    view = attention_view(torch.tensor([[1.0, 0.0], [0.25, 0.75]]), ["a", "b"])
    html = view._repr_html_()
    assert '"weights":[[[[1,0],[0.25,0.75]]]]' in html


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((5, 5), (1, 1, 5, 5)), ((3, 5, 5), (1, 3, 5, 5)), ((2, 3, 5, 5), (2, 3, 5, 5))],
)
def test_every_rank_becomes_layers_heads_queries_keys(
    shape: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    view = attention_view(softmax(*shape), TOKENS)
    assert isinstance(view, AttentionView)
    assert view.weights.shape == expected
    assert view.weights.dtype == torch.float32
    assert repr(view) == "AttentionView(layers={}, heads={}, L={}, S={})".format(*expected)
    data = payload(view._repr_html_())
    assert len(data["layerNames"]) == expected[0]  # type: ignore[arg-type]
    assert len(data["headNames"]) == expected[1]  # type: ignore[arg-type]


def test_input_is_neither_changed_nor_shared() -> None:
    weights = softmax(2, 5, 5).requires_grad_()
    before = weights.detach().clone()
    view = attention_view(weights, TOKENS)
    view.weights.mul_(0)
    assert torch.equal(weights.detach(), before)
    assert not view.weights.requires_grad


def test_no_url_at_all() -> None:
    html = attention_view(softmax(2, 3, 5, 5), TOKENS)._repr_html_()
    assert re.findall(r"://|www\.|\bhref=|\bsrc=|@import|url\(|xmlns", html) == []


def test_tokens_cannot_break_out_of_the_script() -> None:
    tokens = ["</script><script>alert(1)</script>", "<!--", "a&b", '"q"', "猫"]
    html = attention_view(softmax(5, 5), tokens)._repr_html_()
    parsed = outline(html)
    assert [depth for depth, tag, _ in parsed.tags if tag == "script"] == [1, 1]
    assert payload(html)["tokens"] == tokens
    assert "猫" in html  # readable, not \\u escaped


def test_the_script_is_package_data_and_a_few_kilobytes() -> None:
    resource = files("attention_book.interpret").joinpath("attention_view.js")
    assert resource.is_file()
    script = resource.read_text(encoding="utf-8")
    assert 1_000 < len(script.encode()) < 8_000
    html = attention_view(softmax(5, 5), TOKENS)._repr_html_()
    assert script.strip() in html
    assert len(html.encode()) < 12_000
    # no global names: one function expression, called with the view's root
    assert script.strip().startswith("// ")
    code = "\n".join(line for line in script.splitlines() if not line.startswith("//"))
    assert code.strip().startswith("(function (root) {")
    assert code.strip().endswith("})")
    # the page's language picks the words
    assert "documentElement" in script
    assert "层" in script
    assert "Layer" in script


def test_two_views_have_different_ids() -> None:
    view = attention_view(softmax(5, 5), TOKENS)
    ids = {outline(view._repr_html_()).tags[0][2]["id"] for _ in range(2)}
    ids.add(outline(attention_view(softmax(5, 5), TOKENS)._repr_html_()).tags[0][2]["id"])
    assert len(ids) == 3


def test_a_standalone_page() -> None:
    view = attention_view(softmax(2, 5, 5), TOKENS)
    text = view.html_page(lang="zh-CN")
    assert text.startswith("<!DOCTYPE html>")
    assert '<html lang="zh-CN">' in text
    assert '<meta charset="utf-8">' in text
    assert text.count('class="ab-attn"') == 1
    assert re.findall(r"://|www\.", text) == []


def test_weights_above_one_scale_the_shades() -> None:
    view = attention_view(torch.tensor([[2.0, 0.5]]), ["a"], key_tokens=["x", "y"])
    data = payload(view._repr_html_())
    assert data["scale"] == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"weights": torch.ones(5, 5, dtype=torch.long)}, TypeError, "weights must be a float"),
        ({"weights": [[1.0]]}, TypeError, "weights must be a torch.Tensor"),
        ({"weights": torch.ones(5)}, ValueError, r"weights must have 4 dims .*got shape \(5,\)"),
        ({"weights": torch.ones(1, 1, 1, 5, 5)}, ValueError, "weights must have 4 dims"),
        ({"weights": torch.ones(0, 5, 5)}, ValueError, "weights must not be empty"),
        ({"weights": -torch.ones(5, 5)}, ValueError, "weights must be finite and non-negative"),
        (
            {"weights": torch.full((5, 5), float("nan"))},
            ValueError,
            "weights must be finite and non-negative",
        ),
        ({"tokens": TOKENS[:4]}, ValueError, r"tokens must have 5 entries \(L, .*got 4"),
        ({"tokens": "the cat"}, TypeError, "tokens must be a sequence of strings; got str"),
        ({"tokens": 5}, TypeError, "tokens must be a sequence of strings; got int"),
        ({"key_tokens": ["a"]}, ValueError, r"key_tokens must have 5 entries \(S, .*got 1"),
        (
            {"weights": torch.ones(2, 3, 5, 4) / 4},
            ValueError,
            "key_tokens is required when S != L; weights has L = 5 and S = 4",
        ),
        ({"layer_names": ["a", "b", "c"]}, ValueError, r"layer_names must have 2 entries .*got 3"),
        ({"head_names": ["a"]}, ValueError, r"head_names must have 3 entries .*got 1"),
    ],
)
def test_errors_name_the_argument(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    arguments: dict[str, object] = {"weights": softmax(2, 3, 5, 5), "tokens": TOKENS}
    arguments.update(kwargs)
    weights, tokens = arguments.pop("weights"), arguments.pop("tokens")
    with pytest.raises(error, match=match):
        attention_view(weights, tokens, **arguments)  # type: ignore[arg-type]


def test_a_page_executed_twice_renders_the_same_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids come from the data and the order of rendering, never from a random draw."""
    import itertools

    import attention_book.interpret.view as view_module

    views = [attention_view(softmax(2, 3, 5, 5), TOKENS) for _ in range(2)]
    runs = []
    for _ in range(2):  # a fresh kernel starts its count again
        monkeypatch.setattr(view_module, "_RENDERED", itertools.count())
        runs.append([view._repr_html_() for view in views])
    assert runs[0] == runs[1]
    ids = [re.search(r'id="(ab-attn-[0-9a-f]{12})"', html) for html in runs[0]]
    assert ids[0] is not None
    assert ids[1] is not None
    assert ids[0].group(1) != ids[1].group(1), "two views of the same data share an id"
