"""Named training recipes: keyword options of `irevnet_tf.training.train` for known set-ups.

    from irevnet_tf import training
    result = training.train(model_dir="/tmp/digits", **training.recipes.DIGITS_QUICKSTART)

The flag defaults of trainers/train_imagenet.py are the paper's ImageNet recipe
(`IMAGENET_PAPER`); the others are spelled out here and in README.md as command lines.
"""

# The paper: SGD, momentum 0.9, weight decay 1e-4, batch 256, lr 0.1 divided by 10 every
# 160k iterations, 600k iterations (random resized crop 224 and flips; no colour jitter).
IMAGENET_PAPER = dict(config="irevnet301", dataset="imagenet2012", batch_size=256,
                      base_learning_rate=0.1, lr_schedule="step", train_steps=600_000,
                      lr_decay_steps=(160_000, 320_000, 480_000), lr_decay_factor=0.1,
                      momentum=0.9, weight_decay=1e-4)

# The authors' release: 128 epochs, lr x0.1 every 32 epochs.
IMAGENET_RELEASE = dict(IMAGENET_PAPER, train_steps=None, lr_decay_steps=None,
                        train_epochs=128, lr_decay_epochs=(32, 64, 96))

# The paper's CIFAR-10 recipe: lr 0.1 at batch 128 (0.2 per 256 images), weight decay 5e-4,
# 200 epochs, lr x0.2 after epochs 60, 120 and 160.
CIFAR10_PAPER = dict(config="irevnet_cifar", dataset="cifar10", batch_size=128,
                     base_learning_rate=0.2, lr_schedule="step", train_epochs=200,
                     lr_decay_epochs=(60, 120, 160), lr_decay_factor=0.2, momentum=0.9,
                     weight_decay=5e-4)

# The quickstart: irevnet_small on the embedded digits, about 1.5 minutes on a 2-core CPU,
# about 98 % on the 359 held-out digits (evaluated in one batch, so that none is dropped).
DIGITS_QUICKSTART = dict(config="irevnet_small", dataset="digits", batch_size=64,
                         eval_batch_size=359, train_epochs=8, lr_schedule="cosine",
                         base_learning_rate=0.8, weight_decay=5e-4, steps_per_loop=30,
                         eval_every=0, checkpoint_every=0, seed=0)
