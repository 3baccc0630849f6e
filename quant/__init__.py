"""Quantiser: checkpoint loaders, calibration, packages, data, accuracy reports (quant -> golden -> base)."""
from base import ROOT, settings

DEMO_CHECKPOINT = ROOT / "examples" / "mini_digits.safetensors"     # `make demo`'s model
# format choices of quant.calibrate.choose_formats (here, so that the CLI lists them without torch)
CALIBRATION_METHODS = ("maxabs", "percentile", "mse")


def single_thread() -> None:
    """The models here are small: torch's thread pool only adds contention (measured ~50x
    slower calibration with 2 threads on a busy 2-core machine). OMP_NUM_THREADS overrides."""
    import torch
    if settings.OMP_NUM_THREADS is None:
        torch.set_num_threads(1)
