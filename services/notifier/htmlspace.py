"""The HTML templates' own layout whitespace, collapsed when a template is compiled (pure).

An SMTP server reads an email a line at a time (issue 13: a few microseconds of its CPU per
line), and the HTML template puts every tag on a line of its own. `CompactHtml` (a Jinja
extension) rewrites the literal text of `.html` templates - never a value inserted into them,
so staff notes keep their line breaks - where a browser shows no difference:

- a run of whitespace holding a line break, next to a block-level tag (`<p>`, `</tr>`,
  `<table>`, ...; see BLOCK), is dropped: whitespace there is not rendered;
- any other such run becomes one space (what white-space: normal shows it as);
- inside `<pre>`, `<textarea>`, `<script>`, `<style>` and any element whose style attribute
  sets `white-space: pre...`/`break-spaces`, and inside tags (attribute values), nothing is
  changed.

Whitespace without a line break is dropped next to a block-level tag too (indentation), and
kept elsewhere. A line break is kept instead where a line of the template's text has grown
past about LINE_BUDGET characters (counting each inserted value as VALUE_GUESS) and the place
is outside any `{% if %}`, `{% for %}`, `{% block %}`... (whose content may not be output), so
that with the values filled in a line stays well inside the 998 octets a line of a 7bit/8bit
body may have (wire.LONGEST_8BIT; a part with a longer line is sent quoted-printable).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream

# Elements whose boundaries make the whitespace beside them unrendered: block-level and table
# elements, and what lives in <head> (never rendered).
BLOCK = frozenset(
    [
        "!doctype",
        "html",
        "head",
        "body",
        "title",
        "meta",
        "link",
        "base",
        "style",
        "script",
        "main",
        "header",
        "footer",
        "section",
        "article",
        "nav",
        "aside",
        "div",
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "blockquote",
        "pre",
        "address",
        "figure",
        "figcaption",
        "form",
        "fieldset",
        "legend",
        "details",
        "summary",
        "table",
        "caption",
        "colgroup",
        "col",
        "thead",
        "tbody",
        "tfoot",
        "tr",
        "th",
        "td",
        "ul",
        "ol",
        "li",
        "dl",
        "dt",
        "dd",
        "center",
    ]
)
# Elements whose text is shown (or run) as written.
_PRESERVED = frozenset({"pre", "textarea", "script", "style"})
_PRE_STYLE = re.compile(r"white-space\s*:\s*(pre|break-spaces)", re.IGNORECASE)
_TAG_NAME = re.compile(r"</?\s*([!A-Za-z][A-Za-z0-9-]*)")
_WS = " \t\r\n\f"
# Statements whose content may not be output (a line break kept there could vanish with it).
_OPENS = frozenset({"if", "for", "block", "macro", "call", "filter", "with", "raw"})
_CLOSES = frozenset({f"end{name}" for name in _OPENS})
LINE_BUDGET = 250  # characters of template text on one line before a line break is kept
VALUE_GUESS = 60  # what an inserted value is counted as


class CompactHtml(Extension):
    """Collapses the layout whitespace of templates whose name ends in `.html`."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        if not (stream.name or "").endswith(".html"):
            yield from stream
            return
        scan = _Scanner()
        tag_opened = False
        for token in stream:
            if token.type == "data":
                yield Token(token.lineno, "data", scan.data(token.value))
                continue
            if token.type == "variable_begin":
                scan.value()
            elif tag_opened and token.type == "name":
                if token.value in _OPENS:
                    scan.depth += 1
                elif token.value in _CLOSES:
                    scan.depth -= 1
            tag_opened = token.type == "block_begin"
            yield token


class _Scanner:
    """The state carried across one template's literal text pieces."""

    def __init__(self) -> None:
        self.in_tag = False  # inside <...> (its text may be split by an inserted value)
        self.tag = ""  # the literal text of the tag being read
        self.after_block = False  # the text so far ends with a block-level tag
        self.preserved: list[str] = []  # open elements whose whitespace is shown
        self.column = 0  # characters since the last line break (an estimate)
        self.depth = 0  # inside how many statements that may not be output

    def value(self) -> None:
        """An inserted value comes next."""
        self.after_block = False
        self.column += VALUE_GUESS

    def data(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            if self.in_tag:
                end = text.find(">", i)
                stop = n if end == -1 else end + 1
                self.tag += text[i:stop]
                out.append(text[i:stop])
                self.column += stop - i
                i = stop
                if end != -1:
                    self._close_tag()
                continue
            ch = text[i]
            if ch == "<" and _TAG_NAME.match(text, i):
                self.in_tag, self.tag, self.after_block = True, "", False
                continue
            if ch in _WS and not self.preserved:
                j = i
                while j < n and text[j] in _WS:
                    j += 1
                out.append(self._space(text[i:j], text, j))
                i = j
                continue
            # Text (or whitespace shown as written) up to the next tag or whitespace.
            j = i + 1
            while j < n and text[j] != "<" and (self.preserved or text[j] not in _WS):
                j += 1
            piece = text[i:j]
            out.append(piece)
            newline = piece.rfind("\n")
            self.column = len(piece) - newline - 1 if newline != -1 else self.column + len(piece)
            self.after_block = False
            i = j
        return "".join(out)

    def _space(self, run: str, text: str, end: int) -> str:
        """What a run of whitespace outside tags becomes."""
        next_tag = _TAG_NAME.match(text, end) if end < len(text) else None
        beside_block = self.after_block or (
            next_tag is not None and next_tag.group(1).lower() in BLOCK
        )
        if "\n" not in run:
            if beside_block:
                return ""
            self.column += len(run)
            self.after_block = False
            return run
        if self.column >= LINE_BUDGET and self.depth <= 0:
            self.column = 0
            return "\n"
        if beside_block:
            return ""
        self.column += 1
        self.after_block = False
        return " "

    def _close_tag(self) -> None:
        self.in_tag = False
        tag = self.tag
        m = _TAG_NAME.match(tag)
        name = m.group(1).lower() if m else ""
        closing = tag.startswith("</")
        if self.preserved:
            if name == self.preserved[-1]:
                if closing:
                    self.preserved.pop()
                elif not tag.endswith("/>"):
                    self.preserved.append(name)
        elif (
            not closing
            and not tag.endswith("/>")
            and (name in _PRESERVED or _PRE_STYLE.search(tag))
        ):
            self.preserved.append(name)
        self.after_block = name in BLOCK and not self.preserved


__all__ = ["BLOCK", "LINE_BUDGET", "CompactHtml"]
