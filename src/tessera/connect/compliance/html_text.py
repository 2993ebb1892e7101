"""The text content of an HTML part, for the compliance check of email messages.

Built on the standard library's :class:`html.parser.HTMLParser`: the text nodes (character
references decoded; tags, comments, declarations and the contents of ``<script>`` and
``<style>`` left out) are located in the source by the parser's own positions, so a
replacement rewrites only the text node it applies to and leaves every tag, attribute and
comment byte for byte as it was.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from typing import NamedTuple

__all__ = ["TemplateText", "TextNode", "html_text", "replace_text", "text_nodes"]


class TextNode(NamedTuple):
    start: int  # offset of the node's source in the HTML
    end: int
    text: str  # decoded text


class _Collector(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.line_starts = [0]
        at = source.find("\n")
        while at >= 0:
            self.line_starts.append(at + 1)
            at = source.find("\n", at + 1)
        # (offset, decoded text or None for markup), in source order
        self.events: list[tuple[int, str | None]] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def _markup(self) -> None:
        self.events.append((self._offset(), None))

    def handle_data(self, data: str) -> None:
        # inside <script>/<style> the parser hands the raw contents over as data: not text
        in_raw = getattr(self, "cdata_elem", None) is not None
        self.events.append((self._offset(), None if in_raw else data))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._markup()

    def handle_endtag(self, tag: str) -> None:
        self._markup()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._markup()

    def handle_comment(self, data: str) -> None:
        self._markup()

    def handle_decl(self, decl: str) -> None:
        self._markup()

    def handle_pi(self, data: str) -> None:
        self._markup()

    def unknown_decl(self, data: str) -> None:
        self._markup()


def text_nodes(source: str) -> list[TextNode]:
    """The text nodes of ``source`` with their spans, in document order."""
    parser = _Collector(source)
    parser.feed(source)
    parser.close()
    events = parser.events
    nodes: list[TextNode] = []
    for i, (start, text) in enumerate(events):
        if not text:
            continue
        end = events[i + 1][0] if i + 1 < len(events) else len(source)
        if nodes and nodes[-1].end == start:  # the parser may hand one node over in pieces
            prev = nodes.pop()
            nodes.append(TextNode(prev.start, end, prev.text + text))
        else:
            nodes.append(TextNode(start, end, text))
    return nodes


def html_text(source: str) -> str:
    """The text content (tags stripped, entities decoded), one space between text nodes."""
    return " ".join(n.text for n in text_nodes(source))


def replace_text(source: str, replace: Callable[[str], str]) -> str:
    """``source`` with ``replace`` applied to each text node; a changed node is written back
    HTML-escaped, everything else is kept as it was."""
    out: list[str] = []
    last = 0
    for node in text_nodes(source):
        new = replace(node.text)
        if new == node.text:
            continue
        out.append(source[last : node.start])
        out.append(html_lib.escape(new, quote=False))
        last = node.end
    if not out:
        return source
    out.append(source[last:])
    return "".join(out)


_BREAKS_IN = re.compile(r"&[#A-Za-z0-9]*\{\{|<[/!?]?\{\{")


class TemplateText:
    """The text content of HTML rendered from one template, without parsing each rendering.

    A batch renders one HTML template per recipient with HTML-escaped values; when every
    placeholder of the template sits in a text node (not in a tag, comment, script or style)
    and none follows an unfinished ``&…`` or a ``<`` (a value could then complete a character
    reference or start a tag), the escaped values cannot change the document's structure, and
    the text content of a rendering is the template's text content with the values filled in.
    :meth:`text` returns None when that does not hold; the caller then parses the rendering.
    """

    __slots__ = ("_nodes", "_placeholder", "usable")

    def __init__(self, template: str, placeholder: re.Pattern[str]) -> None:
        nodes = text_nodes(template)
        in_text = sum(len(placeholder.findall(template[n.start : n.end])) for n in nodes)
        self.usable = in_text == len(placeholder.findall(template)) and not _BREAKS_IN.search(template)
        self._nodes = [n.text for n in nodes]
        self._placeholder = placeholder

    def text(self, values: Mapping[str, str]) -> str | None:
        if not self.usable:
            return None
        try:
            return " ".join(self._placeholder.sub(lambda m: values[m.group(1)], t) for t in self._nodes)
        except KeyError:
            return None
