"""Figures in the reader's language: the Chinese edition's SVG figures, translated.

The code cells are shared by both editions, so a figure's text is drawn in English
(``svg.fonttype: none`` in ``docs/matplotlibrc`` keeps it as SVG ``<text>``). The
Chinese edition replaces each line of figure text that the catalogue
``docs/figure-text-zh/*.yaml`` translates; nothing is executed again. A catalogue entry
maps one line of figure text to its translation; ``{}`` in an entry stands for any text
and is carried over (``"scale = {}": "缩放 = {}"``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: One SVG text element of a matplotlib figure: opening tag, text, closing tag.
SVG_TEXT = re.compile(r"(<text\b[^>]*>)([^<]*)(</text>)")
#: Figure text worth a translation: it holds a Latin word of two letters or more.
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@dataclass
class Catalogue:
    """Translations of figure text, exact lines first, then patterns with ``{}``."""

    exact: dict[str, str] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path) -> Catalogue:
        """Merge every ``*.yaml`` mapping of ``folder`` (an empty catalogue if none)."""
        import yaml

        catalogue = cls()
        for path in sorted(folder.glob("*.yaml")):
            entries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(entries, dict):
                msg = f"{path}: expected a mapping of English figure text to its translation"
                raise TypeError(msg)
            catalogue.files.append(path)
            for english, chinese in entries.items():
                known = catalogue.translate(str(english))
                if "{}" not in str(english) and known not in (None, str(chinese)):
                    msg = (
                        f"{path.name}: {english!r} is translated as {chinese!r}, but another "
                        f"file of {folder} says {known!r}; keep one (common.yaml for shared text)"
                    )
                    raise ValueError(msg)
                catalogue.add(str(english), str(chinese))
        return catalogue

    def add(self, english: str, translation: str) -> None:
        """Add one entry; ``{}`` in ``english`` matches any text, reused in order."""
        if "{}" not in english:
            self.exact[english] = translation
            return
        parts = [re.escape(part) for part in english.split("{}")]
        self.patterns.append((re.compile("^" + "(.+?)".join(parts) + "$"), translation))

    def translate(self, text: str) -> str | None:
        """The translation of one line of figure text, or ``None`` if there is none."""
        if text in self.exact:
            return self.exact[text]
        for pattern, translation in self.patterns:
            match = pattern.match(text)
            if match:
                result = translation
                for group in match.groups():
                    result = result.replace("{}", group, 1)
                return result
        return None


#: A tag of an SVG file (its attributes hold coordinates; text between tags is left alone).
SVG_TAG = re.compile(r"<[^<>]+>")
#: A coordinate with more decimals than a screen can show: 1 or more before the point.
LONG_NUMBER = re.compile(r"(?<![\w.#])(-?[1-9]\d*\.\d{2})\d+")


def compact_svg(svg: str) -> str:
    """Shorten numbers of 1 or more inside tags to 2 decimals (a hundredth of a pixel).

    matplotlib writes every coordinate with 6 decimals; a figure with a few hundred markers
    weighs a third less with 2, and looks the same. Numbers below 1 (opacities, scale
    factors), text between tags (tick labels) and embedded images are left as they are.
    """
    return SVG_TAG.sub(lambda tag: LONG_NUMBER.sub(r"\1", tag.group(0)), svg)


def svg_texts(svg: str) -> list[str]:
    """Every line of text of an SVG figure, unescaped."""
    return [html.unescape(m.group(2)) for m in SVG_TEXT.finditer(svg)]


def translate_svg(svg: str, catalogue: Catalogue) -> tuple[str, list[str]]:
    """Translate the figure text of ``svg``; return it and the Latin texts left as they are."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        text = html.unescape(match.group(2))
        translation = catalogue.translate(text)
        if translation is None:
            if LATIN_WORD.search(text):
                missing.append(text)
            return match.group(0)
        return match.group(1) + html.escape(translation, quote=False) + match.group(3)

    return SVG_TEXT.sub(replace, svg), missing


def leftovers(svg: str, catalogue: Catalogue) -> list[str]:
    """Figure text still in English although the catalogue translates it."""
    return [text for text in svg_texts(svg) if catalogue.translate(text) not in (None, text)]


def translate_notebook_outputs(notebook: object, translate: Callable[[str], str]) -> None:
    """Apply ``translate`` to every SVG output of a notebook (``nbformat`` node), in place."""
    for cell in getattr(notebook, "cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/svg+xml" in data:
                svg = data["image/svg+xml"]
                text = "".join(svg) if isinstance(svg, list) else svg
                data["image/svg+xml"] = translate(text)


def unique(items: Iterable[str]) -> list[str]:
    """Items in first-seen order, without repeats."""
    return list(dict.fromkeys(items))
