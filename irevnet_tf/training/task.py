"""ClassificationTask: the loss, the per-replica train and eval steps, and reconstructions.

What one replica computes on its share of a global batch (Model Garden calls this a task):
- loss: softmax cross-entropy with optional label smoothing, summed over the replica's
  examples and divided by the GLOBAL batch size, so that summing the replicas' gradients
  (which the optimizer's all-reduce does) gives the gradient of the global-batch mean;
- weight decay is not part of the loss: the optimizer (`irevnet_tf.training.MomentumSGD`,
  coupled L2 as in the release's `torch.optim.SGD`) adds it to each gradient, which keeps
  it from holding an extra copy of the parameters through the backward pass.
- the gradient: a plain `tf.GradientTape` over `model(images, training=True)`. With
  `reversible=True` the model's stack carries a custom gradient that rebuilds activations
  from the outputs (irevnet_tf/stack.py), so nothing else is needed here.
- dropout masks: from a stateless seed derived from (run seed, step, replica), so a
  resumed run and each replica draw reproducible, distinct masks.

Steps return per-replica SUMS in one float32 vector; the loop adds them across replicas.
"""

import keras
import tensorflow as tf

TRAIN_METRICS = ("loss_sum", "correct", "count")
EVAL_METRICS = ("loss_sum", "correct", "correct_top5", "count")


class ClassificationTask:
    """Per-replica steps of image classification with an IRevNet.

    Args:
        model: the IRevNet (created under the strategy's scope).
        optimizer: a Keras optimizer, or a `keras.optimizers.LossScaleOptimizer`.
        global_batch_size: examples per step over all replicas (the loss divisor).
        num_classes: classifier outputs.
        label_smoothing: in [0, 1).
        dropout_seed: int base seed of the dropout masks.
    """

    def __init__(self, model, optimizer, global_batch_size, num_classes, label_smoothing=0.0,
                 dropout_seed=0):
        self.model = model
        self.optimizer = optimizer
        self.global_batch_size = int(global_batch_size)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.dropout_seed = int(dropout_seed)
        self.top_k = min(5, self.num_classes)

    def cross_entropy(self, labels, logits):
        """Per-example cross-entropy against (smoothed) one-hot labels, in float32."""
        logits = tf.cast(logits, tf.float32)
        targets = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=tf.float32)
        if self.label_smoothing:
            targets = (targets * (1.0 - self.label_smoothing)
                       + self.label_smoothing / self.num_classes)
        return -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)

    def _replica_dropout_seed(self, step):
        if not getattr(self.model, "dropout_rate", 0):
            return None
        context = tf.distribute.get_replica_context()
        seed = tf.random.experimental.stateless_fold_in(
            tf.constant([self.dropout_seed, 0], tf.int64), tf.cast(step, tf.int64))
        return tf.random.experimental.stateless_fold_in(
            seed, tf.cast(context.replica_id_in_sync_group, tf.int64))

    def compute_gradients(self, images, labels, step):
        """Forward and backward pass on this replica's batch (no update).

        Returns `(gradients, sums)` with `sums = [loss_sum, correct, count]`. Gradients are
        of the (scaled, under mixed_float16) replica loss; the optimizer sums them over the
        replicas and unscales them.
        """
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True,
                                dropout_seed=self._replica_dropout_seed(step))
            per_example = self.cross_entropy(labels, logits)
            loss = tf.nn.compute_average_loss(per_example,
                                              global_batch_size=self.global_batch_size)
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, variables)
        return gradients, tf.stack(self._sums(labels, logits, per_example, top5=False))

    def apply_gradients(self, gradients):
        """The optimizer update (all-reduces the replicas' gradients first)."""
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))

    def train_step(self, images, labels, step, compute_gradients=None):
        """One optimizer step on this replica's batch; returns `[loss_sum, correct, count]`.

        `compute_gradients` replaces `self.compute_gradients`, e.g. by its XLA-compiled
        version: the update with its cross-replica all-reduce stays outside XLA, which
        mirrored strategies need (TPUs compile the whole step anyway).
        """
        gradients, sums = (compute_gradients or self.compute_gradients)(images, labels, step)
        self.apply_gradients(gradients)
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            sums = self._mark_non_finite_gradients(sums, gradients)
        return sums

    @staticmethod
    def _mark_non_finite_gradients(sums, gradients):
        """`sums` with a NaN loss if any gradient is not finite.

        The loss alone does not catch every divergence: a NaN can reach the weights
        while the loss stays finite. In a graph, TensorFlow fuses training-mode batch
        norm + ReLU into one kernel (for channel counts divisible by 4) that maps NaN to
        0, so NaN inputs give finite logits but NaN statistics and gradients. The trainer stops
        on a non-finite loss, so this makes it stop here too. (A loss-scale optimizer
        skips such steps by design and is left alone.)
        """
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                                for g in gradients if g is not None])
        nan = tf.constant(float("nan"), sums.dtype)
        return tf.tensor_scatter_nd_update(
            sums, [[0]], [tf.where(finite, sums[0], nan)])

    def eval_step(self, images, labels):
        """Inference on this replica's batch; returns `[loss_sum, top1, top5, count]`."""
        logits = self.model(images, training=False)
        per_example = self.cross_entropy(labels, logits)
        return tf.stack(self._sums(labels, logits, per_example, top5=True))

    def _sums(self, labels, logits, per_example, top5):
        labels = tf.cast(labels, tf.int32)
        logits = tf.cast(logits, tf.float32)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels),
                          tf.float32)
        sums = [tf.reduce_sum(per_example), tf.reduce_sum(correct)]
        if top5:
            in_top = tf.cast(tf.math.in_top_k(labels, logits, self.top_k), tf.float32)
            sums.append(tf.reduce_sum(in_top))
        sums.append(tf.cast(tf.shape(labels)[0], tf.float32))
        return sums

    def reconstruct(self, images):
        """`(images, decode(encode(images)))` in inference mode, for summaries: pixels."""
        phi = self.model.encode(images, training=False)
        return images, tf.cast(self.model.decode(phi), images.dtype)
