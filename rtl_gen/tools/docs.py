"""Generated sections of docs/accelerator.md (between `<!-- name:begin -->` and
`<!-- name:end -->`): `python -m rtl_gen.tools.docs` rewrites them, tests/rtl_gen/test_docs.py checks
that they are current."""
from __future__ import annotations

import re
import sys

from base import ROOT
from golden import isa
from golden.hw import HW_PRESETS

from ..control.checks import support_text
from ..host.regmap import markdown

DOC = ROOT / "docs" / "accelerator.md"


def sections() -> dict:
    errors = (["| code | name | meaning |", "|---|---|---|"]
              + [f"| {c} | {n} | {t} |" for c, (n, t) in isa.ERRORS.items()])
    out = {"isa": isa.markdown_tables().rstrip(), "header": isa.checks_text(isa.HEADER_CHECKS),
           "errors": "\n".join(errors), "rtl-support": support_text()}
    md = markdown(HW_PRESETS["zcu102"])
    out["regs"] = md[md.index("| Offset"):].rstrip()
    return out


def render(text: str, secs: dict) -> str:
    for name, body in secs.items():
        text = re.sub(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)",
                      lambda m: m.group(1) + body + "\n" + m.group(2), text, flags=re.S)
    return text


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text(), sections()))
    sys.exit(0)
