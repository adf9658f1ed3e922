# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The training optimiser: ``--adamw pytorch`` (default) is torch.optim.AdamW's update, step by step.

References: PyTorch's published AdamW algorithm written out in numpy (decoupled decay first,
then m, v and ``θ −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)``), and torch.optim.AdamW itself in
the optional torch group. The optimiser comes from the flags, as bts_main.py builds it.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import bts_model
import bts_trainer as trainer_lib
from bts_main import parse_train_args
from utils.arguments import frozen_first_blocks, train_config

STEPS, LR = 6, 1e-3
# float32 against float64: 5e-5 of one step's size (Keras's variant is off by ~0.9 lr at step 1).
ATOL = 5e-5 * LR


def _built(tiny_config, *flags):
    """Model with the recipe's freezing and its optimizer, from bts_main.py's flags."""
    keras.utils.set_random_seed(0)
    model = bts_model.build_bts_model(tiny_config)
    args = parse_train_args(["--filenames_file", "x", "--learning_rate", str(LR), *flags])
    trainer_lib.apply_freezing(model, args.encoder, frozen_first_blocks(args))
    config = train_config(args)
    return model, config, trainer_lib.make_optimizer(config, model, total_steps=STEPS)


def _gradients(variables, step):
    """BTS-sized gradients (RMS ~1e-3), different every step and variable."""
    rng = np.random.default_rng(step)
    return [rng.normal(0.0, 1e-3, v.shape).astype(np.float32) for v in variables]


def _pytorch_adamw(params, grads, state, lr, wd, eps, step, b1=0.9, b2=0.999):
    """One torch.optim.AdamW step (PyTorch docs' algorithm), float64."""
    out = []
    for name, p in params.items():
        g = grads[name].astype(np.float64)
        p = p * (1 - lr * wd[name])
        m, v = state.get(name, (np.zeros_like(p), np.zeros_like(p)))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[name] = (m, v)
        denominator = np.sqrt(v) / np.sqrt(1 - b2 ** step) + eps
        out.append((name, p - lr / (1 - b1 ** step) * m / denominator))
    return dict(out)


@pytest.mark.parametrize("eps", [1e-3, 1e-6])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_default_adamw_equals_pytorch_formula_at_every_step(tiny_config, eps, weight_decay):
    model, config, optimizer = _built(tiny_config, "--adam_eps", str(eps), "--weight_decay", str(weight_decay))
    assert type(optimizer) is trainer_lib.TorchAdamW
    variables = model.trainable_variables
    params = {v.path: v.numpy().astype(np.float64) for v in variables}
    decay = {v.path: weight_decay if bts_model.is_encoder_variable(v) else 0.0 for v in variables}
    schedule = trainer_lib.learning_rate_schedule(config.learning_rate, config.final_learning_rate, STEPS)
    state = {}
    for step in range(1, STEPS + 1):
        grads = _gradients(variables, step)
        lr = float(schedule(step - 1))  # the schedule at the iteration being taken, as PT sets it
        params = _pytorch_adamw(params, {v.path: g for v, g in zip(variables, grads)}, state,
                                lr, decay, eps, step)
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables))
        for v in variables:
            np.testing.assert_allclose(v.numpy(), params[v.path], rtol=1e-5, atol=ATOL,
                                       err_msg=f"{v.path} at step {step}")


def test_keras_variant_is_kept_behind_the_flag_and_takes_smaller_first_steps(tiny_config):
    """--adamw keras is keras.optimizers.AdamW: ε on the uncorrected √v (≈7 % of PT's first step)."""
    model, _, optimizer = _built(tiny_config, "--adamw", "keras", "--adam_eps", "1e-3", "--weight_decay", "0")
    assert type(optimizer) is keras.optimizers.AdamW
    variable = model.get_layer("conv5").kernel
    before = variable.numpy().copy()
    grads = [np.full(v.shape, 1e-3, np.float32) for v in model.trainable_variables]
    optimizer.apply_gradients(zip([tf.constant(g) for g in grads], model.trainable_variables))
    # Step 1 with g = 1e-3 everywhere: PT moves lr·g/(g + ε) = lr/2; Keras lr·√(1−β2)·g/(√(1−β2)·g + ε).
    keras_step = LR * np.sqrt(1e-3) * 1e-3 / (np.sqrt(1e-3) * 1e-3 + 1e-3)
    np.testing.assert_allclose(before - variable.numpy(), keras_step, rtol=1e-4)
    assert keras_step / (LR / 2) == pytest.approx(0.0613, abs=1e-3)


def test_fp16_loss_scaling_wraps_the_pytorch_update(tiny_config):
    model, _, optimizer = _built(tiny_config, "--mixed_precision", "fp16", "--adam_eps", "1e-3")
    keras.mixed_precision.set_global_policy("float32")  # only the optimizer is under test
    assert type(trainer_lib.inner_optimizer(optimizer)) is trainer_lib.TorchAdamW
    variable = model.get_layer("conv5").kernel
    before = variable.numpy().copy()
    scale = float(optimizer.scale_loss(tf.constant(1.0)))
    grads = [np.full(v.shape, 1e-3 * scale, np.float32) for v in model.trainable_variables]
    optimizer.apply_gradients(zip([tf.constant(g) for g in grads], model.trainable_variables))
    np.testing.assert_allclose(before - variable.numpy(), LR / 2, rtol=1e-4)  # PT's first step, unscaled


def test_keras_adamw_checkpoint_restores_into_the_pytorch_optimizer(tiny_config, tmp_path):
    """A run folder written before --adamw existed (keras.optimizers.AdamW) resumes its slots."""
    model, _, old = _built(tiny_config, "--adamw", "keras")
    for step in (1, 2):
        old.apply_gradients(zip([tf.constant(g) for g in _gradients(model.trainable_variables, step)],
                                model.trainable_variables))
    path = tf.train.Checkpoint(model=model, optimizer=old).save(str(tmp_path / "ckpt"))
    fresh_model, _, new = _built(tiny_config)
    tf.train.Checkpoint(model=fresh_model, optimizer=new).restore(path).assert_existing_objects_matched()
    assert int(new.iterations.numpy()) == 2
    for a, b in zip(old.variables, new.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.torch
def test_default_adamw_matches_torch_optim_adamw(tiny_config):
    torch = pytest.importorskip("torch")
    model, config, optimizer = _built(tiny_config, "--adam_eps", "1e-3", "--weight_decay", "1e-2",
                                      "--end_learning_rate", str(LR))  # constant lr: one torch group setting
    variables = model.trainable_variables
    tensors = [torch.tensor(v.numpy(), dtype=torch.float64, requires_grad=True) for v in variables]
    encoder = [t for t, v in zip(tensors, variables) if bts_model.is_encoder_variable(v)]
    decoder = [t for t, v in zip(tensors, variables) if not bts_model.is_encoder_variable(v)]
    reference = torch.optim.AdamW([{"params": encoder, "weight_decay": 1e-2},
                                   {"params": decoder, "weight_decay": 0.0}], lr=LR, eps=1e-3)
    for step in range(1, STEPS + 1):
        grads = _gradients(variables, step)
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g, dtype=torch.float64)
        reference.step()
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables))
        for v, t in zip(variables, tensors):
            np.testing.assert_allclose(v.numpy(), t.detach().numpy(), rtol=1e-5, atol=ATOL,
                                       err_msg=f"{v.path} at step {step}")
