"""Members' Markdown (a proposal's rationale and evidence) rendered safely for the pages: CommonMark with raw
HTML disabled (written HTML shows as text), links and autolinked bare URLs kept only when they are http(s) and
given ``rel="nofollow noopener"``, images shown as their alt text. The ``markdown`` Jinja filter."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

_URL = re.compile(r"https?://[^\s<>()\"']+[^\s<>()\"'.,;:!?]")
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).disable("image")


def _safe_href(href: str) -> bool:
    return urlsplit(href.strip()).scheme.lower() in ("http", "https")


def _links(tokens: list[Token]) -> None:
    """Keep only http(s) links (others become their text) and mark them nofollow noopener."""
    for tok in tokens:
        if tok.children:
            kept: list[Token] = []
            skip_close = 0
            for child in tok.children:
                if child.type == "link_open":
                    if not _safe_href(str(child.attrGet("href") or "")):
                        skip_close += 1
                        continue
                    child.attrSet("rel", "nofollow noopener")
                elif child.type == "link_close" and skip_close:
                    skip_close -= 1
                    continue
                kept.append(child)
            tok.children = kept


def _bare_urls(tokens: list[Token]) -> None:
    """Bare ``http(s)://`` URLs in text become links (markdown-it's linkify needs linkify-it-py)."""
    url = _URL
    for tok in tokens:
        if not tok.children:
            continue
        out: list[Token] = []
        depth = 0
        for child in tok.children:
            if child.type == "link_open":
                depth += 1
            elif child.type == "link_close":
                depth -= 1
            if child.type != "text" or depth or not url.search(child.content):
                out.append(child)
                continue
            at = 0
            for m in url.finditer(child.content):
                if m.start() > at:
                    out.append(_text(child.content[at : m.start()]))
                link = Token("link_open", "a", 1)
                link.attrSet("href", m.group(0))
                link.attrSet("rel", "nofollow noopener")
                out += [link, _text(m.group(0)), Token("link_close", "a", -1)]
                at = m.end()
            if at < len(child.content):
                out.append(_text(child.content[at:]))
        tok.children = out


def _text(content: str) -> Token:
    t = Token("text", "", 0)
    t.content = content
    return t


def render_markdown(value: Any) -> Markup:
    """Safe HTML for a member's Markdown text (see the module's docstring)."""
    text = str(value or "")
    if not text.strip():
        return Markup("")
    tokens = _md.parse(text)
    _links(tokens)
    _bare_urls(tokens)
    html = _md.renderer.render(tokens, _md.options, {})
    return Markup(html)  # markdown-it escapes all text; raw HTML is disabled
