"""What every bench report's PNG needs: matplotlib on its file-only backend (where it is
installed: it is the `bench` extra), and the figure written and closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NO_MATPLOTLIB = "plot skipped: matplotlib is not installed (pip install matplotlib)"


def pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig: Any, path: Path) -> str:
    """Lays the figure out, writes it to `path` (its folder made) and closes it; returns the
    line the report prints."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"
