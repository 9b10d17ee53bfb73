"""Sphinx configuration of the en edition; the shared settings live in ../conf_common.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conf_common import configure

configure(globals(), "en")
