"""MomentumSGD: the paper's optimizer (SGD, momentum, coupled L2 weight decay), updated in place.

The release trains with `torch.optim.SGD(lr, momentum, weight_decay)`: the decay is
coupled, `g = dL/dw + wd * w`, before momentum. Keras' own `weight_decay=` argument is
decoupled (AdamW-style), which is another recipe.

Why not `keras.optimizers.SGD` plus an L2 term in the loss: in a TensorFlow graph both
create, for every variable, tensors that depend only on state present at the start of the
step (`momentum * m` in Keras' update; `wd * w` from the L2 term's gradient, available as
soon as the backward pass starts). The executor computes them early and holds them until
the variable's gradient arrives, an extra copy of the parameters through the backward pass
(about 0.5 GiB for irevnet301), memory that grows with depth. Here the momentum update is
TensorFlow's fused in-place kernel `ResourceApplyKerasMomentum` (`m = momentum * m - lr * g;
w += m`, the same arithmetic as Keras' SGD; XLA compiles it, so TPUs run it too), and the
decay is added to the gradient, reading the weights only once the gradient exists (a
control dependency; XLA, which ignores those, schedules for memory itself).

With a single replica the gradients skip Keras' cross-replica sum (see
`_all_reduce_sum_gradients`), so each variable is updated, and its gradient freed, as soon
as the gradient exists: with the reversible gradient the step never holds all gradients at
once (benchmarks/train_memory.py, README).
"""

import keras
import tensorflow as tf

from irevnet_tf import validation


@keras.saving.register_keras_serializable(package="irevnet_tf")
class MomentumSGD(keras.optimizers.SGD):
    """SGD with momentum and coupled weight decay, one fused in-place update per variable.

    Update of a variable `w` with gradient `g`, velocity `m` (Keras' convention):
    `g' = g + l2_decay * w;  m = momentum * m - lr * g';  w += m`. While the rate is
    constant this is PyTorch's `b = momentum * b + g'; w -= lr * b` with `m = -lr * b`.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: in [0, 1); 0 gives plain SGD (with the decay).
        l2_decay: coupled weight-decay coefficient (`weight_decay` of torch.optim.SGD),
            applied to every variable the optimizer updates, >= 0.
        nesterov: Nesterov momentum, as in Keras' SGD.
        **kwargs: the other `keras.optimizers.Optimizer` arguments (not `weight_decay`:
            that is the decoupled decay; use `l2_decay`).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2_decay=0.0, nesterov=False,
                 name="momentum_sgd", **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "MomentumSGD: `weight_decay` is Keras' decoupled decay; the paper's recipe is "
                f"the coupled `l2_decay`. Got weight_decay={kwargs['weight_decay']!r}.")
        validation.check_number(l2_decay, "MomentumSGD: `l2_decay`", 0)
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                         name=name, **kwargs)
        self.l2_decay = float(l2_decay)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        learning_rate = tf.cast(learning_rate, dtype)
        gradient = tf.cast(gradient, dtype)
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        if self.l2_decay:
            # Read w only once the gradient exists: `l2 * w` depends on nothing else, and a
            # graph executor would compute it for every variable at the start of the step
            # and hold those copies through the backward pass.
            with tf.control_dependencies([gradient]):
                weights = tf.identity(_as_tf_variable(variable))
            gradient = gradient + tf.cast(self.l2_decay, dtype) * weights
        if self.momentum == 0:
            self.assign_sub(variable, gradient * learning_rate)
            return
        velocity = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_as_tf_variable(variable).handle, accum=_as_tf_variable(velocity).handle,
            lr=learning_rate, grad=gradient, momentum=tf.cast(self.momentum, dtype),
            use_nesterov=self.nesterov)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Keras 3 (the versions with this method; 3.0 has none) sums the gradients over
        # replicas even when there is one, through `ReplicaContext.all_reduce`, whose
        # custom gradient is one `IdentityN` op taking every gradient as input. With the
        # decay's read of `w` behind it, no update started before the last gradient
        # existed and all gradients were alive at once (irevnet301 at 32x32: 0.50 GiB peak
        # instead of 0.08); without the read the updates did not wait, presumably because
        # grappler drops that op only when no control dependency hangs on its outputs.
        # A sum over one replica is the gradient itself.
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return list(grads_and_vars)
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def get_config(self):
        config = super().get_config()
        config["l2_decay"] = self.l2_decay
        return config


def _as_tf_variable(variable):
    # Keras 3 wraps tf.Variables (and distributed ones) in its own Variable class.
    return variable.value if isinstance(variable, keras.Variable) else variable
