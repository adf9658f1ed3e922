# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""AdamW update size against the official optimiser, step by step (issue: ε placement).

    python -m benchmarks.bench_adamw [--eps 1e-3] [--rms 1e-3]

Feeds the same gradient stream (N(0, rms²), fresh every step, 4096 weights) to Keras's
``keras.optimizers.AdamW`` (``--adamw keras``), to ``bts_trainer.TorchAdamW`` (``--adamw
pytorch``, the default) and, when PyTorch is installed, to ``torch.optim.AdamW`` (the official
code's optimiser; else PyTorch's formula in numpy), at the recipe's lr 1e-4, no weight decay, and
prints mean |update| / mean |official update| at steps 1, 10, 100, 1000, 3000.
"""
from __future__ import annotations

import argparse

import numpy as np

STEPS = (1, 10, 100, 1000, 3000)


def _official(grads, lr, eps):
    """Per-step mean |Δθ| of torch.optim.AdamW (numpy formula without PyTorch)."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        p = torch.zeros(grads.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.AdamW([p], lr=lr, eps=eps, weight_decay=0.0)
        out = []
        for g in grads:
            before = p.detach().clone()
            p.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
            out.append(float((p.detach() - before).abs().mean()))
        return out, "torch.optim.AdamW"
    m = v = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, start=1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        out.append(float(np.mean(np.abs(lr / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + eps)))))
    return out, "PyTorch's formula (numpy)"


def _keras(optimizer, grads):
    import tensorflow as tf

    var = tf.Variable(tf.zeros(grads.shape[1], tf.float32))
    optimizer.build([var])
    apply = tf.function(lambda g: optimizer.apply_gradients([(g, var)]))
    out = []
    for g in grads:
        before = var.numpy()
        apply(tf.constant(g, tf.float32))
        out.append(float(np.mean(np.abs(var.numpy() - before))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eps", type=float, default=1e-3, help="AdamW epsilon (the recipe's 1e-3)")
    parser.add_argument("--rms", type=float, default=1e-3, help="gradient RMS")
    args = parser.parse_args()
    import keras

    import bts_trainer

    lr = 1e-4
    grads = np.random.default_rng(0).normal(0.0, args.rms, (max(STEPS), 4096))
    official, name = _official(grads, lr, args.eps)
    rows = {"keras.optimizers.AdamW": _keras(keras.optimizers.AdamW(lr, weight_decay=0.0, epsilon=args.eps), grads),
            "bts_trainer.TorchAdamW": _keras(bts_trainer.TorchAdamW(lr, weight_decay=0.0, epsilon=args.eps), grads)}
    print(f"mean |update| / {name}'s, eps {args.eps:g}, gradient RMS {args.rms:g}")
    print("optimizer".ljust(24) + "".join(f"step {s}".rjust(12) for s in STEPS))
    for label, sizes in rows.items():
        print(label.ljust(24) + "".join(f"{sizes[s - 1] / official[s - 1]:12.4f}" for s in STEPS))


if __name__ == "__main__":
    main()
