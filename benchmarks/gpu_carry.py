"""Pack what the GPU benchmark needs into `.gpu/` (git-ignored) for the device machine, which takes at most 64 MiB
of carried files and reaches no hub: MiniLM's weights as fp16 (45 MB instead of 91), its config and tokenizer
files, and the GLUE data. There, `unpack` casts the weights back to fp32, so both model codes the benchmark
compares load the same fp32 weights (fp16 → fp32 is exact; they are the pretrained weights rounded to fp16).

    python benchmarks/gpu_carry.py pack --data-dir ../shared/data/glue        # here
    python3 benchmarks/gpu_carry.py unpack /tmp/minilm                         # there (then --model /tmp/minilm)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu"
WEIGHTS = "model.safetensors"
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def cast_folder(src: Path, dst: Path, dtype: torch.dtype) -> None:
    """`src`'s model files into `dst`, its floating-point weights cast to `dtype`."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    weights = load_file(src / WEIGHTS)
    save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}, dst / WEIGHTS,
              metadata={"format": "pt"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pack = sub.add_parser("pack")
    pack.add_argument("--data-dir", type=Path, required=True, help="GLUE folder (tasks as subfolders)")
    pack.add_argument("--tasks", default="MRPC")
    unpack = sub.add_parser("unpack")
    unpack.add_argument("to", type=Path)
    a = p.parse_args()
    if a.cmd == "pack":
        sys.path.insert(0, str(REPO))
        from mte.models import resolve_model_path

        cast_folder(Path(resolve_model_path("minilm")), CARRY / "minilm", torch.float16)
        for task in a.tasks.split(","):
            shutil.copytree(a.data_dir / task, CARRY / "glue" / task, dirs_exist_ok=True)
        print(f"packed into {CARRY}: {sum(f.stat().st_size for f in CARRY.rglob('*') if f.is_file()) / 2**20:.1f} MiB")
    else:
        cast_folder(CARRY / "minilm", a.to, torch.float32)
        print(f"unpacked fp32 weights into {a.to}")


if __name__ == "__main__":
    main()
