"""Helpers shared by the tests of several directories: `from tests.helpers import block_input`
(tests/conftest.py puts the project root first on sys.path)."""
from __future__ import annotations


def block_input(q, x, block: int):
    """int16 tokens entering block `block` of the golden model `q`, from embedded tokens x
    [b, n, C] (`q.embed`): the blocks before it, without token selection."""
    for i in range(block):
        x = q.blocks[i](x)
    return x


# inputs of issue 15 (tests/spvit/conftest.py `bad_inputs`): a hardware name that is no Verilog
# identifier nor a file name, and a checkpoint key that would forge an error line if printed raw
BAD_HW_NAME = "../../etc/x y \u00fc"
FORGED_KEY = "evil\n\x1b[31mspvit: error: forged"
