"""Named training recipes, each declared once: keyword options of `irevnet_tf.training.train`.

    from irevnet_tf import training
    result = training.train(model_dir="/tmp/digits", **training.recipes.DIGITS_QUICKSTART)

`IMAGENET_PAPER` is the one declaration of the paper's ImageNet recipe: the defaults of
`TrainConfig` (hence of the flags of trainers/train_imagenet.py and their `--help`) and the
run length and decay boundaries the training plan derives read it, and `PAPER_SUMMARY` is
the sentence README.md, docs/training.md and the trainer's docstring quote (a test keeps
them equal). `DIGITS_QUICKSTART` is the one declaration of the quickstart's recipe (the
defaults of `python -m irevnet_tf.quickstart`); README.md's Quickstart section gives its
measured time and accuracy.
"""

# The paper (i-RevNet, ICLR 2018, section 4): SGD, momentum 0.9, weight decay 1e-4, batch 256,
# lr 0.1 divided by 10 every 160k iterations, 600k iterations (random resized crop 224 and
# flips; no colour jitter).
_PAPER_STEPS = 600_000
_PAPER_DECAY_EVERY = 160_000
IMAGENET_PAPER = dict(config="irevnet301", dataset="imagenet2012", batch_size=256,
                      base_learning_rate=0.1, lr_schedule="step", train_steps=_PAPER_STEPS,
                      lr_decay_steps=tuple(range(_PAPER_DECAY_EVERY, _PAPER_STEPS,
                                                 _PAPER_DECAY_EVERY)),
                      lr_decay_factor=0.1, momentum=0.9, weight_decay=1e-4,
                      label_smoothing=0.0)


def _small(number):
    # 1e-4 as papers write it, not 0.0001.
    return f"{number:.0e}".replace("e-0", "e-")


def _thousands(steps):
    return f"{steps // 1000}k" if steps % 1000 == 0 else str(steps)


# One sentence for the documents (`test_recipes.py` checks that they quote it as it is).
PAPER_SUMMARY = (
    f"SGD with momentum {IMAGENET_PAPER['momentum']:g}, coupled weight decay "
    f"{_small(IMAGENET_PAPER['weight_decay'])}, batch {IMAGENET_PAPER['batch_size']}, learning rate "
    f"{IMAGENET_PAPER['base_learning_rate']:g} divided by "
    f"{1 / IMAGENET_PAPER['lr_decay_factor']:g} every "
    f"{_thousands(IMAGENET_PAPER['lr_decay_steps'][0])} steps, "
    f"{_thousands(IMAGENET_PAPER['train_steps'])} steps")

# The authors' release: 128 epochs, lr x0.1 every 32 epochs.
IMAGENET_RELEASE = dict(IMAGENET_PAPER, train_steps=None, lr_decay_steps=None,
                        train_epochs=128, lr_decay_epochs=(32, 64, 96))

# The paper's CIFAR-10 recipe: lr 0.1 at batch 128 (0.2 per 256 images), weight decay 5e-4,
# 200 epochs, lr x0.2 after epochs 60, 120 and 160.
CIFAR10_PAPER = dict(config="irevnet_cifar", dataset="cifar10", batch_size=128,
                     base_learning_rate=0.2, lr_schedule="step", train_epochs=200,
                     lr_decay_epochs=(60, 120, 160), lr_decay_factor=0.2, momentum=0.9,
                     weight_decay=5e-4)

# The quickstart: irevnet_small on the embedded digits, evaluated on the 359 held-out digits
# in one batch (so that none is dropped). Its time and accuracy: README.md, "Quickstart".
DIGITS_QUICKSTART = dict(config="irevnet_small", dataset="digits", batch_size=64,
                         eval_batch_size=359, train_epochs=8, lr_schedule="cosine",
                         base_learning_rate=0.8, weight_decay=5e-4, steps_per_loop=30,
                         eval_every=0, checkpoint_every=0, seed=0)
