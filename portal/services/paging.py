"""One page of rows, for lists that count and read their own rows (the invoice list's keyset read,
the credit ledger's window query) rather than through ``db.paginate``; it offers what the pager
partial and ``db.paginate``'s ``Pagination`` offer (``items``, ``page``, ``pages``, ``has_prev``…)."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def rows(self) -> list:
        """The items, under the name the ledger's templates use."""
        return self.items

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1
