"""Offset pages for lists (the proposals' API and page): the next and previous pages' URLs with the same
filters, and the RFC 8288 ``Link`` header the JSON API sends with them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True)
class Pages:
    next: str | None
    previous: str | None
    first_shown: int  # 1-based number of the first row shown (0: none)
    last_shown: int

    def link_header(self) -> str | None:
        links = [f'<{u}>; rel="{rel}"' for rel, u in (("next", self.next), ("prev", self.previous)) if u]
        return ", ".join(links) or None


def pages(path: str, params: dict[str, object], offset: int, limit: int, shown: int, more: bool) -> Pages:
    """``shown`` rows from ``offset``; ``more``: whether rows follow. ``params`` are the filters to keep (empty
    and false values are left out)."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}

    def url(at: int) -> str:
        query = {**kept, **({"offset": at} if at else {}), "limit": limit}
        return f"{path}?{urlencode(query)}"

    return Pages(
        next=url(offset + limit) if more else None,
        previous=url(max(0, offset - limit)) if offset > 0 else None,
        first_shown=offset + 1 if shown else 0,
        last_shown=offset + shown,
    )
