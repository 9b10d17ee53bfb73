"""The hosting files parse and say what the README promises.

Neither Read the Docs nor GitHub Actions can run from here, so these tests
check their syntax and the facts the build relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))


def test_readthedocs_builds_both_editions_with_nox() -> None:
    config = load(".readthedocs.yaml")
    assert config["version"] == 2
    build = config["build"]
    assert set(build) == {"os", "tools", "commands"}  # commands exclude jobs
    commands = " ; ".join(build["commands"])
    assert "nox -s docs" in commands
    assert "download.pytorch.org/whl/cpu" in commands
    assert "docs/_build/html $READTHEDOCS_OUTPUT/html" in commands


def test_pages_workflow_restores_the_cache_and_publishes_the_site() -> None:
    workflow = load(".github/workflows/pages.yml")
    # YAML 1.1 reads the key `on` as True.
    triggers = workflow.get("on", workflow.get(True))
    assert "push" in triggers
    assert workflow["permissions"]["pages"] == "write"
    steps = workflow["jobs"]["build"]["steps"]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    assert uses["actions/cache"]["with"]["path"] == "docs/_build/.jupyter_cache"
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "docs/_build/html"
    runs = [s["run"] for s in steps if "run" in s]
    assert "python -m nox -s docs" in runs
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")
