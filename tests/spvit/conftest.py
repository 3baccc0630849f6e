"""The quantiser's fixtures (a small random `mini` model, its checkpoint and package) for the
command-line tests here."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_quant_fixtures", Path(__file__).parents[1] / "quant" / "conftest.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
cfg, images, model, state, ckpt, qmodel, package = (_mod.cfg, _mod.images, _mod.model, _mod.state, _mod.ckpt,
                                                     _mod.qmodel, _mod.package)


from tests.helpers import BAD_HW_NAME, FORGED_KEY  # noqa: E402


@_mod.pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory, state):
    """Inputs a new user might give by mistake or an attacker on purpose (issue 15), shared by
    test_bad_inputs.py and the fuzz test: damaged and unusual checkpoints, a FIFO, hardware and
    model TOMLs that do not fit, an image folder unlike the model's input."""
    import os

    import torch
    from PIL import Image
    d = tmp_path_factory.mktemp("bad")
    torch.save(state, d / "good.pth")
    torch.save({**state, "norm.weight": state["norm.weight"].to_sparse()}, d / "sparse.pth")
    torch.save(state, d / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({**state, FORGED_KEY: torch.zeros(1)}, d / "forged-key.pth")
    raw = bytearray((d / "good.pth").read_bytes())
    mid = len(raw) // 2                                   # inside a tensor's zip member
    raw[mid] ^= 0xFF
    raw[mid + 1] ^= 0xFF
    (d / "crc.pth").write_bytes(bytes(raw))
    os.mkfifo(d / "fifo.pth")
    (d / "dir.pth").mkdir()
    (d / "hw_desc.toml").write_text('[hardware]\npreset = "mini"\ndesc_max = 10\n')
    (d / "hw_name.toml").write_text(f'[hardware]\npreset = "mini"\nname = "{BAD_HW_NAME}"\n')
    (d / "cols32.toml").write_text("[hardware]\nmac_cols = 32\n")
    (d / "hd32.toml").write_text('preset = "spvit-deit-small"\n[model]\nnum_heads = 12\n')
    (d / "base768.toml").write_text('preset = "deit-small"\n[model]\nembed_dim = 768\nnum_heads = 12\n')
    (d / "mnist.toml").write_text('preset = "mini"\n[model]\ndepth = 6\n')      # no [preprocess]
    for c in ("a", "b"):
        (d / "mnist" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (28, 28), 60 * i + 100 * (c == "b")).save(d / "mnist" / c / f"{i}.png")
    return d
