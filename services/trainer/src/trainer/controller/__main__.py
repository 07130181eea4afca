"""`python -m trainer.controller`: the same as `trainer controller`."""

import sys

from trainer.controller.app import serve

sys.exit(serve())
