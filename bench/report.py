"""What every bench ends with: its results as JSON (with the machine and the date) and its table in markdown."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def save(path: Path, rows: list[dict], table: list[dict], **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(), "rows": rows, "table": table,
                                "date": time.strftime("%Y-%m-%d"), **extra}, indent=2))


def print_table(table: list[dict], label: str, digits: int = 2) -> None:
    """`table` as a markdown table: the column `label` left-aligned, numbers right-aligned."""
    keys = list(table[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" if k == label else "---:" for k in keys) + "|")
    for row in table:
        print("| " + " | ".join(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
