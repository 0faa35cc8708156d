"""Small hand-made catalogues and histories shared by the evaluation tests."""

from __future__ import annotations

import pandas as pd


def interactions(rows: list[tuple[str, str, float]], day: int = 1) -> pd.DataFrame:
    """Build an interactions table from ``(user_id, item_id, weight)`` rows."""
    return pd.DataFrame({
        "user_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "timestamp": pd.Timestamp(f"2020-01-{day:02d}", tz="UTC"),
        "weight": [float(r[2]) for r in rows],
        "event_type": "rating",
    })


def two_type_catalogue() -> pd.DataFrame:
    """Five artists and three tags."""
    artists = [f"artist:{i}" for i in range(5)]
    tags = [f"tag:{i}" for i in range(3)]
    return pd.DataFrame({"item_id": artists + tags,
                         "item_type": ["artist"] * 5 + ["tag"] * 3})
