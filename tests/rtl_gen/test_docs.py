"""docs/accelerator.md's generated sections (descriptor tables, error codes, register map) equal
what golden/isa.py and rtl_gen/host/regmap.py define (regenerate with `python -m rtl_gen.tools.docs`)."""
from rtl_gen.tools.docs import DOC, render, sections


def test_accelerator_doc_is_current():
    text = DOC.read_text()
    assert render(text, sections()) == text, "docs/accelerator.md is stale: run `python -m rtl_gen.tools.docs`"
