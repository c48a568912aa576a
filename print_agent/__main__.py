"""`python -m print_agent …`: the same as `chenpi-print-agent …`."""
import sys

from .cli import main

sys.exit(main())
