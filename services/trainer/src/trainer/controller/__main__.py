"""`python -m trainer.controller`: the same as `trainer controller`."""

import sys

from trainer.controller.app import serve

if __name__ == "__main__":  # importing the package's modules (the image build does) must not serve
    sys.exit(serve())
