"""Train the digits network (``attn_export/models/digits.py``) and write its committed weights.

    python tools/train_digits.py [--epochs 30] [--out attn_export/models/weights/digits_net.pth]

Seeded and single-threaded, so the same torch build writes the same bytes: the weights in the
repository are what this script makes (tests/models/test_digits.py re-trains one epoch twice and
checks both runs agree, and checks the committed weights' held-out accuracy). About a minute on
one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attn_export.models.digits import WEIGHTS, DigitsNet, digits_split, top1  # noqa: E402


def train(epochs: int, seed: int = 0, batch: int = 64, lr: float = 3e-3,
          progress=print) -> DigitsNet:
    """Adam with a cosine schedule on the 1,400 training images, seeded end to end."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, y_train, x_test, y_test = digits_split()
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            acc = top1(net(torch.from_numpy(x_test)).numpy(), y_test)
        progress(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, held-out top-1 {acc:.4f}")
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    start = time.perf_counter()
    net = train(args.epochs, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB, {sum(p.numel() for p in net.parameters())} "
          f"parameters) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
