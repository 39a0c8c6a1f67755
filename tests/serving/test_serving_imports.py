"""The serving install has no torch: importing the CLI must not try to load it (it is imported lazily, inside the
training and export functions of citywatch.models; pyproject's import-linter contract names those places)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "ultralytics")


def test_importing_the_serving_cli_loads_no_torch_or_ultralytics() -> None:
    probe = (
        "import json, sys\n"
        "import citywatch.serving.cli\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr  # in the serving venv a module-level `import torch` fails here
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing citywatch.serving.cli loaded {loaded}"
