"""Pages of a listing: ``limit`` items after the one whose id is ``marker``."""

from .errors import InvalidRequestError


def page(items: list[dict], limit: int, marker: str | None, key="id"):
    """The ``limit`` items after the one whose ``key`` is ``marker`` (from the first
    without one), and the marker of the next page: None on the last page. ``key`` is a
    field's name, or a function of an item giving its marker.

    :raises InvalidRequestError: no item has the marker (it may be gone since).
    """
    mark = key if callable(key) else lambda item: str(item[key])
    start = 0
    if marker is not None:
        start = next((i + 1 for i, item in enumerate(items) if mark(item) == marker), None)
        if start is None:
            raise InvalidRequestError(f"marker: nothing called {marker} in this listing")
    chosen = items[start : start + limit]
    more = start + limit < len(items)
    return chosen, mark(chosen[-1]) if more and chosen else None
