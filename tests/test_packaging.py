"""Packaging guard: every folder of Python code under the top-level packages ships in the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("vision", "models", "pipelines", "cases", "serving", "datasets", "stack")


def test_every_code_folder_is_a_listed_package_with_its_directory() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    mapping = setuptools["package-dir"]
    for top in TOP_LEVEL:
        for folder in [REPO / top, *(p for p in (REPO / top).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(folder.glob("*.py")):
                continue
            name = "citywatch." + ".".join(folder.relative_to(REPO).parts)
            assert name in listed, (
                f"{folder.relative_to(REPO)} has code but {name} is not in [tool.setuptools] packages"
            )
            assert mapping.get(name) == str(folder.relative_to(REPO)), f"package-dir lacks {name}"


def test_datasets_has_no_top_level_init() -> None:
    # Without it, `import datasets` still finds HuggingFace's package when both are installed.
    assert not (REPO / "datasets" / "__init__.py").exists()
