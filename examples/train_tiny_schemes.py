"""Train a `mini` DynamicViT, EViT or Evo-ViT DeiT on scikit-learn's digits, on CPU, in minutes
(the SPViT demo model is made by train_tiny.py; this script shares its helpers).

Phase 1 trains the unpruned backbone (cross-entropy), as train_tiny.py.
Phase 2 is the scheme's own objective:
  dynamicvit  the predictors with the DynamicViT objective (dynamicvit.txt Eq. 16: CE + 0.5 KL +
              0.5 token distillation to the phase-1 model + 2 * ratio loss towards rho, rho^2),
              Gumbel-softmax decisions and attention masking (training only); the backbone is
              frozen for the first sixth of the epochs, then trains at 1/100 of the predictors'
              rate (as the paper); then the backbone is fine-tuned under the exact inference
              pruning (top-k, the float twin's forward), predictors fixed.
  evit        the whole model fine-tuned through the EViT forward itself (top-k by CLS attention,
              fused token), keep rate warmed up from 1 to the target over the first half (as the
              authors), CE + 0.5 KL to the phase-1 model.
  evovit      the whole model fine-tuned through the Evo-ViT forward itself (mean-pooled output,
              top tokens on the slow path, placeholders frozen), CE + 0.5 KL to the phase-1 model
              (the authors' extra training-only CLS head is not used).
Writes a safetensors state_dict with the authors' key names (Evo-ViT: its DeiT release's
qks/vs/norms/projs layout, loaded back through the key map).

    PYTHONPATH=. .venv/bin/python examples/train_tiny_schemes.py --scheme evit --out examples/mini_evit.safetensors
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_tiny import evaluate, run_epochs, train_backbone  # noqa: E402

from golden.config import load_config  # noqa: E402
from golden.float_model import DeiT  # noqa: E402
from quant import schemes  # noqa: E402
from quant.data import digits  # noqa: E402
from quant.train import dynamicvit_loss, masked_forward  # noqa: E402

PHASE2 = {"dynamicvit": 12, "evit": 10, "evovit": 10}


def kl_to(logits, t_logits):
    return F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t_logits, -1), log_target=True, reduction="batchmean")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scheme", required=True, choices=sorted(PHASE2))
    ap.add_argument("--out", help="default examples/mini_<scheme>.safetensors")
    ap.add_argument("--config", help="default mini-<scheme>")
    ap.add_argument("--backbone-epochs", type=int, default=50)
    ap.add_argument("--epochs", type=int, help="phase 2 epochs (default dynamicvit 12, evit 10, evovit 10)")
    ap.add_argument("--finetune-epochs", type=int, default=4, help="dynamicvit: backbone under the inference pruning")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = load_config(args.config or f"mini-{args.scheme}").model
    if cfg.selector != args.scheme:
        sys.exit(f"--config {cfg.name} has selector {cfg.selector!r}, not {args.scheme!r}")
    out = Path(args.out or f"examples/mini_{args.scheme}.safetensors")
    train, test = digits(cfg, "train").tensors(), digits(cfg, "test").tensors()
    t_start = time.time()

    model = DeiT(cfg)
    model.init_weights(seed=args.seed)
    backbone = [p for n, p in model.named_parameters() if not n.startswith("score_predictor")]
    predictors = [p for n, p in model.named_parameters() if n.startswith("score_predictor")]

    teacher, acc_unpruned, t1 = train_backbone(model, backbone, args, train, test, gen, t_start)

    epochs = args.epochs or PHASE2[args.scheme]
    steps = epochs * math.ceil(len(train[0]) / args.batch)
    counter = [0]
    if args.scheme == "dynamicvit":
        targets = [cfg.scheme.ratio(cfg, s) for s in range(cfg.stages)]
        frozen = steps // 6

        def dyn_step(x, y):
            for p in backbone:                 # backbone frozen for the first sixth, then 1/100 of the rate
                p.requires_grad_(counter[0] >= frozen)
            counter[0] += 1
            with torch.no_grad():
                t_logits, t_tokens, _, _ = masked_forward(teacher, x, "none")
            logits, tokens, alive, fracs = masked_forward(model, x, "gumbel")
            loss, parts = dynamicvit_loss(logits, y, t_logits, tokens, t_tokens, alive, fracs, targets)
            for j, f in enumerate(fracs):
                parts[f"keep{j}"] = float(f.mean().detach())
            return loss, parts

        run_epochs(model, [(predictors, 2e-3), (backbone, 2e-5)], epochs, train, dyn_step, args.batch, gen,
                   "dynamicvit")
        for p in predictors:
            p.requires_grad_(False)
        for p in backbone:
            p.requires_grad_(True)
        ft_epochs = args.finetune_epochs
    else:
        ft_epochs = epochs
    base = cfg

    def twin_step(x, y):
        if args.scheme == "evit":              # keep rate warm-up: 1 -> target over the first half
            f = min(1.0, counter[0] / max(1, steps // 2))
            model.cfg = dataclasses.replace(base, keep_rate=tuple(1 - f * (1 - r) for r in base.keep_rate))
        counter[0] += 1
        with torch.no_grad():
            t_logits = masked_forward(teacher, x, "none")[0]
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        kl = kl_to(logits, t_logits)
        return ce + 0.5 * kl, {"ce": float(ce.detach()), "kl": float(kl.detach()),
                               "acc": float((logits.argmax(1) == y).float().mean())}

    counter[0] = 0
    run_epochs(model, [(backbone, 2e-4 if args.scheme == "dynamicvit" else 5e-4)], ft_epochs, train, twin_step,
               args.batch, gen, "finetune" if args.scheme == "dynamicvit" else args.scheme)
    model.cfg = base
    t2 = time.time()
    acc, keep = evaluate(model, *test)
    print(f"{args.scheme} model: held-out top-1 {100 * acc:.2f}% (unpruned backbone {100 * acc_unpruned:.2f}%), "
          f"kept per stage " + ", ".join(f"{100 * k:.1f}%" for k in keep) + f" of {cfg.num_patches} patches")
    print(f"training time: backbone {t1 - t_start:.0f} s, {args.scheme} {t2 - t1:.0f} s, total {t2 - t_start:.0f} s")

    from safetensors.torch import save_file
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": cfg.name, "data": "digits:train",
            "command": " ".join(["examples/train_tiny_schemes.py"] + (argv if argv is not None else sys.argv[1:])),
            "heldout_top1_unpruned": f"{acc_unpruned:.4f}", "heldout_top1": f"{acc:.4f}",
            "keep_rate": json.dumps([round(float(k), 4) for k in keep]),
            "train_seconds": f"{t2 - t_start:.0f}", "torch": torch.__version__}
    sd = schemes.of(cfg).to_authors({k: v.detach().contiguous() for k, v in model.state_dict().items()})
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=meta)
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
