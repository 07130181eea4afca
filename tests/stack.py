"""The local stack under the name the tests import (`from tests import stack`).

The code lives in scripts/local_stack.py because `make demo` runs it too, and the product must not
import tests/.
"""

from scripts.local_stack import *  # noqa: F403
