"""Measured defaults the CLI's help and the verbs share (no torch here: ``drkit --help`` stays cheap).

Each value says where it was measured; change one only with the benchmark that moved it.
"""
from __future__ import annotations

#: the one small-image threshold: images with a side up to this get the mild default recipe
#: (pad-crop + flip: RandAugment, erasing and small crops destroy 28-32 px images), and on the CPU
#: their batches render in the training process with each RandAugment stage's warps
#: fused (28 px: RA 1.3x faster; 224 px: per-view grids ~1.2x slower than the calls they save)
SMALL_SIDE = 64

#: DR/KD temperature when ``--temperature`` is not given, with the targets softened on both sides
#: (Hinton). Fashion-MNIST, out-of-fold teachers, drkit_cnn_tiny, 3 seeds: T = 2 gave +1.60 top-1
#: over the best ERM, T = 1 +0.72, T = 4 +1.39 (``benchmarks/results/when_dr_helps_eeda2e7.md``, soften sweep).
DISTILL_TEMPERATURE = 2.0

#: ERM label smoothing when ``--label-smoothing`` is not given. ``--folds`` teachers default to 0:
#: their probabilities become stored labels, and smoothing caps their confidence at 1 - e + e/C.
LABEL_SMOOTHING = 0.1

#: a ``--folds`` member schedule shorter than this many optimizer steps gets a warning: members of
#: 140 steps reached 66 % held-out and their store taught a student 61 % against ERM's 92 %; the
#: shipped Fashion-MNIST members train 3,510 steps (94 % held-out)
FOLDS_MIN_STEPS = 1000

#: teachers whose held-out (out-of-fold) or plain-image top-1 is below this are called weak by
#: reinforce: a student trained on their labels learns at most about what they know
WEAK_TEACHER_TOP1 = 0.75

#: peak lr per 256 images (linear scaling rule) and default weight decay, per optimiser (``--opt``'s choices)
OPTIMIZERS: dict[str, dict[str, float]] = {"sgd": {"lr": 0.1, "weight_decay": 5e-4},
                                           "adamw": {"lr": 2e-3, "weight_decay": 0.05}}
