"""Guest-side helpers for host functions: ``cove.h`` (C) and ``cove_guest.py``
(a standalone module for a guest's python3). ``DIR`` is where they live, to
mount or put on the guest's include/import path."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parent

