"""Test doubles for the North: an address space that records what is mapped."""

from __future__ import annotations


class FakeSpace:
    """Mirrors the platform contract: one entry per mapped page."""

    def __init__(self) -> None:
        self.pages: dict[int, tuple[int, int]] = {}  # vaddr -> (frame, prot)
        self.flushes = 0

    def map(self, vaddr: int, frame: int, prot: int) -> None:
        assert vaddr & 0xFFF == 0
        self.pages[vaddr] = (frame, prot)

    def unmap(self, vaddr: int, length: int) -> list[int]:
        gone = [self.pages.pop(a) for a in range(vaddr, vaddr + length, 4096) if a in self.pages]
        return [frame for frame, _ in gone]

    def flush(self) -> None:
        self.flushes += 1
