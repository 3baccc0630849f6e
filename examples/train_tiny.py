"""Train the `mini` SPViT-DeiT preset on scikit-learn's digits, on CPU, in a few minutes.

Phase 1 trains the unpruned backbone (cross-entropy).
Phase 2 trains the selectors with the SPViT objective, spvit.txt Eq. 11-12: cross-entropy +
  0.5 KL + 0.5 token distillation to the phase-1 model + 2 * keep-ratio loss, Gumbel-softmax
  decisions (training only); the backbone is frozen (the paper's backbone lr 5e-6 is ~frozen).
Phase 3 sets the decision thresholds: Gumbel training leaves the selectors uncertain (keep
  probability ~0.7 for most tokens), so the deterministic rule used at inference would keep
  nearly everything; each stage's keep margin is shifted so that the deterministic rule keeps
  the target fractions on the training split (quant.train.calibrate_thresholds).
Phase 4 fine-tunes the backbone under those deterministic pruned decisions (CE + KL +
  distillation, selectors fixed).
Writes a safetensors state_dict with timm / official-SPViT names.

    PYTHONPATH=. .venv/bin/python examples/train_tiny.py --out examples/mini_digits.safetensors
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.config import load_config  # noqa: E402
from golden.float_model import DeiT  # noqa: E402
from quant.data import digits  # noqa: E402
from quant.train import calibrate_thresholds, masked_forward, spvit_loss  # noqa: E402


def shift_augment(x, pad: int, gen):
    """Random translation by up to `pad` pixels (background -1 fills the border)."""
    b, c, s, _ = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    return torch.stack([xp[i, :, dy[i]:dy[i] + s, dx[i]:dx[i] + s] for i in range(b)])


def schedule(opt, base_lrs, step, total, warmup):
    f = step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g, lr in zip(opt.param_groups, base_lrs):
        g["lr"] = lr * f


@torch.no_grad()
def evaluate(model, imgs, labels):
    model.eval()
    logits = torch.cat([model(imgs[i:i + 100]) for i in range(0, len(imgs), 100)])
    kept = model.last_kept  # only the last chunk; recompute below for all
    ks = []
    for i in range(0, len(imgs), 100):
        model(imgs[i:i + 100])
        ks.append(model.last_kept)
    kept = torch.cat(ks).float()
    return float((logits.argmax(1) == labels).float().mean()), kept.mean(0) / model.cfg.num_patches


def run_epochs(model, params_lrs, epochs, train, step_fn, batch, gen, label):
    x_all, y_all = train
    opt = torch.optim.AdamW([{"params": p, "lr": lr} for p, lr in params_lrs], weight_decay=0.05)
    base = [lr for _, lr in params_lrs]
    steps_per = math.ceil(len(x_all) / batch)
    total, step = epochs * steps_per, 0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x_all), generator=gen)
        t0, agg = time.time(), {}
        for s in range(0, len(x_all), batch):
            idx = perm[s:s + batch]
            schedule(opt, base, step, total, warmup=min(total // 10, 100))
            loss, parts = step_fn(shift_augment(x_all[idx], 2, gen), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k, v in parts.items():
                agg[k] = agg.get(k, 0.0) + v / steps_per
        print(f"{label} epoch {ep + 1:3d}/{epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in agg.items())
              + f" ({time.time() - t0:.1f} s)", flush=True)


def train_backbone(model, backbone, args, train, test, gen, t_start):
    """Phase 1: the backbone alone on cross-entropy. Returns a frozen copy (the teacher of phase 2),
    its held-out top-1 and the time phase 1 ended."""
    def ce_step(x, y):
        logits = masked_forward(model, x, "none")[0]
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss, {"ce": float(loss.detach()), "acc": float((logits.argmax(1) == y).float().mean())}

    run_epochs(model, [(backbone, 2e-3)], args.backbone_epochs, train, ce_step, args.batch, gen, "backbone")
    t1 = time.time()
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        logits = torch.cat([masked_forward(teacher, test[0][i:i + 200], "none")[0]
                            for i in range(0, len(test[0]), 200)])
    acc_unpruned = float((logits.argmax(1) == test[1]).float().mean())
    print(f"unpruned backbone: held-out top-1 {100 * acc_unpruned:.2f}% ({t1 - t_start:.0f} s)", flush=True)
    return teacher, acc_unpruned, t1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples/mini_digits.safetensors")
    ap.add_argument("--config", default="mini")
    ap.add_argument("--backbone-epochs", type=int, default=50)
    ap.add_argument("--selector-epochs", type=int, default=12)
    ap.add_argument("--temp", default="1,1", help="Gumbel sampling temperature: start,end (geometric, reached "
                    "half-way through phase 2, then held); 1,1 is plain Gumbel-softmax")
    ap.add_argument("--finetune-epochs", type=int, default=6,
                    help="phase 4: backbone fine-tuning under the deterministic pruned decisions")
    ap.add_argument("--init", help="start from this checkpoint's backbone (use with --backbone-epochs 0)")
    ap.add_argument("--keep", default="0.7,0.45", help="target cumulative keep ratios per stage (Eq. 11)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest for this size on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = load_config(args.config).model
    targets = [float(v) for v in args.keep.split(",")]
    if len(targets) != cfg.stages:
        sys.exit(f"--keep needs {cfg.stages} values for {cfg.name} (got {len(targets)})")
    tr, te = digits(cfg, "train"), digits(cfg, "test")
    train, test = tr.tensors(), te.tensors()
    t_start = time.time()

    model = DeiT(cfg)
    model.init_weights(seed=args.seed)
    if args.init:
        from quant.loaders import load_float_model
        init = load_float_model(args.init, cfg).state_dict()
        model.load_state_dict({k: v for k, v in init.items() if not k.startswith("score_predictor")}, strict=False)
    backbone = [p for n, p in model.named_parameters() if not n.startswith("score_predictor")]
    selectors = [p for n, p in model.named_parameters() if n.startswith("score_predictor")]

    teacher, acc_unpruned, t1 = train_backbone(model, backbone, args, train, test, gen, t_start)

    counter = [0]
    total_sel_steps = args.selector_epochs * math.ceil(len(train[0]) / args.batch)

    def spvit_step(x, y):
        with torch.no_grad():
            t_logits, t_tokens, _, _ = masked_forward(teacher, x, "none")
        t0, t1 = (float(v) for v in args.temp.split(","))
        temp = t0 * (t1 / t0) ** min(1.0, counter[0] / max(1, total_sel_steps // 2))
        counter[0] += 1
        logits, tokens, alive, fracs = masked_forward(model, x, "gumbel", temp=temp)
        loss, parts = spvit_loss(logits, y, t_logits, tokens, t_tokens, alive, fracs, targets)
        for j, f in enumerate(fracs):
            parts[f"keep{j}"] = float(f.mean())
        parts["temp"] = temp
        return loss, parts

    for p in backbone:          # phase 2 trains the selectors only (the paper's backbone lr 5e-6 ~ frozen)
        p.requires_grad_(False)
    run_epochs(model, [(selectors, 2e-3)], args.selector_epochs, train, spvit_step,
               args.batch, gen, "selectors")
    acc2, keep2 = evaluate(model, *test)
    print(f"after phase 2 (deterministic decisions): held-out top-1 {100 * acc2:.2f}%, keep rate per stage "
          + ", ".join(f"{100 * k:.1f}%" for k in keep2), flush=True)

    # phase 3: cut the learned ranking where the deterministic rule keeps the target fractions
    deltas = calibrate_thresholds(model, train[0], targets)
    acc3, keep3 = evaluate(model, *test)
    print(f"phase 3 thresholds (margin shifts {', '.join(f'{d:+.3f}' for d in deltas)}): held-out top-1 "
          f"{100 * acc3:.2f}%, keep rate per stage " + ", ".join(f"{100 * k:.1f}%" for k in keep3), flush=True)

    # phase 4: fine-tune the backbone under the deterministic pruning (selectors fixed)
    for p in backbone:
        p.requires_grad_(True)
    for p in selectors:
        p.requires_grad_(False)

    def det_step(x, y):
        with torch.no_grad():
            t_logits, t_tokens, _, _ = masked_forward(teacher, x, "none")
        logits, tokens, alive, fracs = masked_forward(model, x, "det")
        loss, parts = spvit_loss(logits, y, t_logits, tokens, t_tokens, alive, fracs, [f.mean() for f in fracs])
        for j, f in enumerate(fracs):
            parts[f"keep{j}"] = float(f.mean())
        return loss, parts

    run_epochs(model, [(backbone, 2e-4)], args.finetune_epochs, train, det_step, args.batch, gen, "finetune")
    t2 = time.time()
    acc, keep = evaluate(model, *test)
    print(f"SPViT model (deterministic decisions): held-out top-1 {100 * acc:.2f}%, keep rate per stage "
          + ", ".join(f"{100 * k:.1f}%" for k in keep) + f" of {cfg.num_patches} patches")
    print(f"training time: backbone {t1 - t_start:.0f} s, selectors {t2 - t1:.0f} s, total {t2 - t_start:.0f} s")

    from safetensors.torch import save_file
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": cfg.name, "data": "digits:train", "command": " ".join(["examples/train_tiny.py"] + sys.argv[1:]),
            "heldout_top1_unpruned": f"{acc_unpruned:.4f}", "heldout_top1": f"{acc:.4f}",
            "keep_rate": json.dumps([round(float(k), 4) for k in keep]),
            "train_seconds": f"{t2 - t_start:.0f}", "torch": torch.__version__}
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
