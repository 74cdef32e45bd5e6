"""The shape of the tree, checked in CI: no module of mte/, sweeps/ or tracking/ over 350 lines (a module holds
one idea; a longer one is split by idea). Import circles and layering are `lint-imports`' (pyproject.toml)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mte", "sweeps", "tracking")
MAX_LINES = 350


def long_modules(root: Path, limit: int = MAX_LINES) -> dict[str, int]:
    """Modules under `root`'s packages longer than `limit` lines: path relative to `root` → lines."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found[str(path.relative_to(root))] = lines
    return found


def test_no_module_over_350_lines():
    offenders = long_modules(REPO)
    assert not offenders, "split by idea: " + ", ".join(f"{p} ({n} lines)" for p, n in offenders.items())


def test_the_check_names_a_long_module(tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "sweeps" / "fits.py").write_text("x = 1\n" * MAX_LINES)
    assert long_modules(tmp_path) == {"sweeps/big.py": MAX_LINES + 1}
