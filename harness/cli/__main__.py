"""`python -m harness.cli ...` is `harness ...`."""
import sys

from harness.cli import main

sys.exit(main())
