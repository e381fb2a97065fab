"""Byte mutations shared by the fuzz tests: a valid file, then a few flipped, deleted or inserted bytes."""

from __future__ import annotations

from hypothesis import strategies as st


def edit_lists(max_size: int = 6) -> st.SearchStrategy[list[tuple[int, int, int]]]:
    """Lists of ``(kind, position, byte)`` edits for :func:`mutate` (positions wrap around the data)."""
    return st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)), max_size=max_size)


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flips a byte, 1 deletes one, 2 inserts one."""
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            out.append(value)
            continue
        i = position % len(out)
        if kind == 0:
            out[i] ^= value or 1
        elif kind == 1:
            del out[i]
        else:
            out.insert(i, value)
    return bytes(out)
