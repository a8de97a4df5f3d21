"""The real services the tests, benchmarks and demo run against, started on 127.0.0.1."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = ROOT / ".stack"
