"""What-if: how many decision flips (and what logits SQNR) a datapath `e` bits wider than int16
would give. The float twin is run with every int16 rounding of the golden model emulated at
the calibrated format plus `e` fraction bits (round half up, no saturation: the extra bits
widen the word): the input image, patch embedding, position embedding, `res.0`, the CLS row,
and per block LN1, q, k, v, the attention scores, the Q15 probabilities of P V, the P V
output, proj, `mid`, LN2, fc1, GELU, fc2 and `out` (the CLS row at its own formats). Not
emulated: the exp table, LayerNorm's and the selection's internals (the fused token, the
mean), the final LayerNorm and head. The ranking reads the unrounded probabilities of the
rounded scores (the golden model's are Q23, far finer). `e = 0` is the int16 model's error
budget without its kernel details, so its flip count is comparable to the golden model's, not
equal. Prints per seed the logits SQNR against the plain float twin and the flip count.
docs/arithmetic.md, "EViT and Evo-ViT: decision flips", quotes its output.

    .venv/bin/python benchmarks/wider_datapath.py [--presets evit-deit-tiny,evovit-deit-tiny]
                                                  [--seeds 0,1,2,3,4] [--images 32] [--extra-bits 0,1,2,3,4]
"""
from __future__ import annotations

import argparse
import copy
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from golden.config import load_config  # noqa: E402
from golden.kernels import PROB_FRAC  # noqa: E402
from golden.random_model import random_images, random_model  # noqa: E402
from quant.calibrate import calibrate  # noqa: E402
from quant.selfcheck import first_flip, sqnr_db  # noqa: E402


def rounded(t, frac: int):
    """t rounded half up to `frac` fraction bits, unsaturated."""
    return torch.floor(t * 2.0 ** frac + 0.5) / 2.0 ** frac


def rounded_rows(t, frac: int, cls_frac):
    """A token stream [b, n, C] rounded; row 0 (the CLS token) at its own format when it has one."""
    if cls_frac is None:
        return rounded(t, frac)
    return torch.cat([rounded(t[:, :1], cls_frac), rounded(t[:, 1:], frac)], 1)


def emulated(model, q, e: int):
    """A float64 copy of `model` whose embedding, attention and blocks round every tensor the
    golden model `q` keeps in int16, at its format + e fraction bits (module docstring)."""
    m = copy.deepcopy(model).double()

    def plus(frac):
        return None if frac is None else frac + e

    def embed(self, img, trace=None):
        img = rounded(img.double(), q.img_frac + e)
        x = rounded(self.patch_embed(img), q.patch.out_frac + e) + rounded(self.pos_embed[:, 1:], q.fmt["pos"] + e)
        cls = rounded(self.cls_token + self.pos_embed[:, :1], q.cls_frac + e)
        return torch.cat([cls.expand(len(x), -1, -1), rounded(x, q.fmt["res.0"] + e)], 1)

    def attend(self, h, trace=None, p="", qa=None):
        b, n, c = h.shape
        qkv = self.qkv(h).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        qq, kk, vv = (rounded(t, f + e) for t, f in zip(qkv, (qa.q.out_frac, qa.k.out_frac, qa.v.out_frac)))
        prob = rounded((qq @ kk.transpose(-2, -1)) * self.scale, qa.s_frac + e).softmax(-1)
        o = rounded((rounded(prob, PROB_FRAC + e) @ vv).transpose(1, 2).reshape(b, n, c), qa.o_frac + e)
        return rounded(self.proj(o), qa.proj.out_frac + e), prob

    def block(self, x, trace=None, p="", mid=None, qb=None):
        o, prob = self.attn.attend(rounded(self.norm1(x), qb.norm1.out_frac + e))
        x = rounded_rows(x + o, qb.mid_frac + e, plus(qb.cls_mid))
        if mid is not None:
            x = mid(x, prob)
        h = rounded(self.norm2(x), qb.norm2.out_frac + e)
        g = rounded(self.mlp.act(rounded(self.mlp.fc1(h), qb.mlp.fc1.out_frac + e)), qb.mlp.act.out_frac + e)
        return rounded_rows(x + rounded(self.mlp.fc2(g), qb.mlp.fc2.out_frac + e), qb.out_frac + e, plus(qb.cls_out))

    m.embed = types.MethodType(embed, m)
    for blk, qb in zip(m.blocks, q.blocks):
        blk.attn.attend = types.MethodType(lambda self, h, trace=None, p="", qa=qb.attn: attend(self, h, qa=qa),
                                           blk.attn)
        blk.forward = types.MethodType(lambda self, x, trace=None, p="", mid=None, qb=qb: block(self, x, mid=mid,
                                                                                                qb=qb), blk)
    return m


def flips(cfg, rec_a, rec_b, images: int) -> int:
    """Images whose kept tokens differ between two records."""
    return sum(first_flip([rec_a.kept_ids(i, s) for s in range(cfg.stages)],
                          [rec_b.kept_ids(i, s) for s in range(cfg.stages)]) is not None for i in range(images))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="evit-deit-tiny,evovit-deit-tiny")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--images", type=int, default=32, help="test images per seed (8 more calibrate)")
    ap.add_argument("--extra-bits", default="0,1,2,3,4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    extra = [int(v) for v in args.extra_bits.split(",")]
    for preset in args.presets.split(","):
        cfg = load_config(preset)
        sqnr = {e: [] for e in extra}
        flipped = {e: 0 for e in extra}
        for seed in (int(s) for s in args.seeds.split(",")):
            imgs = random_images(cfg.model, 8 + args.images, seed=seed)
            model = random_model(cfg.model, seed=seed, balance_with=imgs[:8])
            q = calibrate(model, imgs[:8], cfg.fixed_point)
            test = imgs[8:]
            with torch.no_grad():
                ref = model(test).double().numpy()
                rec = model.last_record
                for e in extra:
                    m = emulated(model, q, e)
                    sqnr[e].append(sqnr_db(ref, m(test.double()).numpy()))
                    flipped[e] += flips(cfg.model, rec, m.last_record, args.images)
        n = args.images * len(sqnr[extra[0]])
        print(f"{preset}: {args.images} test images per seed, seeds {args.seeds}")
        for e in extra:
            print(f"  int{16 + e:<3d} (+{e} bits)  images with a flip {flipped[e]:3d} of {n}  logits SQNR per seed "
                  + ", ".join(f"{v:.1f}" for v in sqnr[e]) + f" dB (worst {min(sqnr[e]):.1f})")


if __name__ == "__main__":
    main()
