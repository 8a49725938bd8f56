"""Peak memory of a LAAT label-attention head forward + backward, fused SDPA vs explicit.

Setting of the paper's largest case: 8,000 codes x 4,000 tokens, batch 1, code dimension
(LAAT projection) 512, encoder width 1024 (LAAT's BiLSTM, 2 x 512).  The explicit path
materialises the float32 token softmax ``[B, C, L]`` (122 MiB per copy here); the SDPA path
(``torch.nn.functional.scaled_dot_product_attention``, FlashAttention kernels on CPU and
CUDA) never builds it.

CPU: every variant runs in its own subprocess; the figure is the growth of the process's
peak resident set (``ru_maxrss``) over its resident set just before the forward pass (inputs,
head and code table already allocated).  CUDA: ``torch.cuda.max_memory_allocated`` growth over
the allocated memory before the forward pass.

Usage::

    python benchmarks/laat_head_memory.py    # -> benchmarks/results/laat_head_memory.{json,md}
    python benchmarks/laat_head_memory.py --codes 2000 --tokens 1000 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))
MB = 1024.0**2


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _setup(args, device):
    import torch

    from jams_pyg.models import LAATHead

    torch.manual_seed(0)
    head = LAATHead(args.in_channels, args.dim, attention=args.variant).to(device)
    codes = torch.nn.Parameter(torch.randn(args.codes, args.dim, device=device) * 0.02)
    bias = torch.nn.Parameter(torch.zeros(args.codes, device=device))
    x = torch.randn(args.batch, args.tokens, args.in_channels, device=device, requires_grad=True)
    mask = torch.ones(args.batch, args.tokens, dtype=torch.bool, device=device)
    mask[:, -args.tokens // 10 :] = False  # some padding, as in a real batch
    return head, codes, bias, x, mask


def _step(head, codes, bias, x, mask) -> None:
    logits = head(x, mask, codes, bias)
    logits.float().sum().backward()


def worker(args) -> dict:
    """One measurement in this process (a fresh subprocess on CPU)."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # load the kernels on a tiny problem so that lazy initialisation is not counted
    small = argparse.Namespace(**{**vars(args), "codes": 8, "tokens": 16})
    _step(*_setup(small, device))
    head, codes, bias, x, mask = _setup(args, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / MB
        start = time.perf_counter()
        _step(head, codes, bias, x, mask)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / MB
        measure = "cuda max_memory_allocated"
    else:
        before = _current_rss_mb()
        start = time.perf_counter()
        _step(head, codes, bias, x, mask)
        seconds = time.perf_counter() - start
        peak = _peak_rss_mb()
        measure = "peak RSS (ru_maxrss) of a subprocess"
    return {
        "variant": args.variant,
        "device": str(device),
        "measure": measure,
        "baseline_mib": round(before, 1),
        "peak_mib": round(peak, 1),
        "peak_increase_mib": round(peak - before, 1),
        "seconds": round(seconds, 2),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=8000)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=512, help="code dimension (projection)")
    parser.add_argument("--in-channels", type=int, default=1024, help="encoder width")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["explicit", "sdpa"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(json.dumps(worker(args)))
        return {}

    rows = []
    for variant in args.variants:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--variant",
            variant,
            "--codes",
            str(args.codes),
            "--tokens",
            str(args.tokens),
            "--batch",
            str(args.batch),
            "--dim",
            str(args.dim),
            "--in-channels",
            str(args.in_channels),
            "--device",
            args.device,
            "--threads",
            str(args.threads),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"variant {variant} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    attention_map_mb = args.batch * args.codes * args.tokens * 4 / MB
    import torch

    result = {
        "benchmark": "LAAT head forward+backward peak memory",
        "codes": args.codes,
        "tokens": args.tokens,
        "batch": args.batch,
        "code_dim": args.dim,
        "encoder_width": args.in_channels,
        "float32_attention_map_mib": round(attention_map_mb, 1),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": args.threads,
        "results": rows,
    }
    lines = [
        f"LAAT head forward+backward: {args.codes} codes x {args.tokens} tokens, batch "
        f"{args.batch}, d {args.dim}, encoder width {args.in_channels} "
        f"(one float32 [B, C, L] map = {attention_map_mb:.0f} MiB)",
        "",
        "| attention | device | peak increase (MiB) | seconds |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['device']} | {r['peak_increase_mib']:.0f} "
            f"| {r['seconds']:.1f} |"
        )
    lines.append("")
    lines.append(f"Measure: {rows[0]['measure']}; torch {torch.__version__}.")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "laat_head_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "laat_head_memory.md").write_text(table + "\n")
    return result


if __name__ == "__main__":
    main()
