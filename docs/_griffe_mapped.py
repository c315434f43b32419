"""griffe extension for the docs site: the mapped subpackages and the docstrings' reST markup.

Named in ``mkdocs.yml`` (``extensions:`` of the mkdocstrings Python handler). It changes nothing
in the sources; it acts on griffe's in-memory model when griffe loads ``physopt_ref``.

1. ``pyproject.toml`` installs the top-level folders ``backends/`` and ``problems/`` as the
   subpackages ``physopt_ref.backends`` and ``physopt_ref.problems``
   (``[tool.setuptools.package-dir]``). griffe finds a package by its folder and does not know
   that mapping, so this extension attaches the two folders to ``physopt_ref``: the API
   reference documents them under the names users import.
2. The docstrings are numpydoc with reStructuredText markup, which mkdocstrings renders as
   Markdown. The extension rewrites the two reST constructs that Markdown would show raw:
   math (``:math:`x``` inline, ``.. math::`` blocks) becomes ``$x$`` / ``$$ ... $$`` for
   pymdownx.arithmatex (MathJax), and cross-reference roles (``:func:`name```, ``:class:``,
   ``:mod:``, ``:data:``, ``:meth:``, ``:attr:``) become inline code; a paragraph's closing
   ``::`` (reST's mark of the literal block after it) becomes ``:``, since Markdown reads the
   indented block as code already.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"physopt_ref": {"backends": ROOT / "backends", "problems": ROOT / "problems"}}

_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc|obj):`~?\.?([^`]+)`")
_LITERAL_MARKER = re.compile(r"(?<=\S)::[ \t]*$", re.M)  # reST "text::" before a code block
_MATH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")


def _math_blocks(text: str) -> str:
    """Turn each ``.. math::`` directive (its indented body) into a ``$$`` block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_BLOCK.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group("indent")
        i += 1
        body = [indent + "    " + match.group("first")] if match.group("first").strip() else []
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        math = textwrap.dedent("\n".join(body)).strip("\n")
        if "&" in math or "\\\\" in math:
            math = "\\begin{aligned}\n" + math + "\n\\end{aligned}"
        out.extend([indent + "$$", *(indent + line for line in math.split("\n")), indent + "$$",
                    ""])
    return "\n".join(out)


def markdown_of(text: str) -> str:
    """The docstring ``text`` with its reST math and roles in Markdown."""
    text = _math_blocks(text)
    text = _LITERAL_MARKER.sub(":", text)  # the indented block after it is Markdown code too
    text = _INLINE_MATH.sub(lambda m: "$" + m.group(1) + "$", text)
    return _ROLE.sub(lambda m: "`" + m.group(1) + "`", text)


def _rewrite(obj: griffe.Object, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if obj.docstring is not None:
        obj.docstring.value = markdown_of(obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite(member, seen)


class MappedFolders(griffe.Extension):
    """Attach ``backends/`` and ``problems/``; rewrite the reST math and roles of docstrings."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for name, folder in MAPPED.get(pkg.name, {}).items():
            if name in pkg.members and not pkg.members[name].is_alias:
                continue
            module = loader._load_module(name, folder / "__init__.py", parent=pkg)
            pkg.set_member(name, module)
        _rewrite(pkg, set())
