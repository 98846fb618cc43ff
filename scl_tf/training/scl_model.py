"""The student and its EMA teacher, and the semi-supervised train step (paper, section 3).

One step, per replica:
  0. each image's colour jitter and blur, drawn by the pipeline, applied here (on the device);
  1. labeled:   the student on x, boundary-relaxed cross entropy -> L_x;
  2. unlabeled: the teacher (inference mode) on u_a and u_b; the CutMix masks from the boxes;
                the student on u_m = mix(u_a, u_b) against mix(p_t(u_a), p_t(u_b)):
                consistency L_c and structured consistency L_sc on the last Nbox boxes;
  3. L = L_x + lambda_c L_c + lambda_sc L_sc (the unlabeled terms optionally ramped up over
     the first steps, and optionally gated on the teacher's confidence, both off by default
     as in the paper), one SGD step on the student;
  4. teacher <- ema * teacher + (1 - ema) * student, for every weight and BN statistic.
x and u_m go through the student as one batch, so BatchNormalization sees both, as with the
paper's one labeled and one unlabeled image per GPU.

Losses are float32 (the models' logits are float32 under any mixed-precision policy) and are
reduced over the global batch: each replica returns its share, and the shares sum to the global
value (the relaxed cross entropy is normalised by the global count of labeled pixels).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from scl_tf.config import Config, PipelineConfig, TrainConfig
from scl_tf.data.cutmix import cutmix_masks, paste
from scl_tf.data.labels import IGNORE_LABEL
from scl_tf.data.pipeline import apply_photometric
from scl_tf.losses import consistency_loss, relaxed_cross_entropy, structured_consistency_loss

LOSS_TERMS = ("loss", "loss_x", "loss_c", "loss_sc")
# The logged share of confident target pixels, with --confidence_threshold.
CONFIDENT_SHARE = "confident_share"
# --confidence_form: "batch" scales the unlabeled terms by the batch's confident share (French
# et al.), "pixel" keeps only confident pixels (FixMatch; see compute_losses).
CONFIDENCE_FORMS = ("batch", "pixel")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What the train step computes: TrainConfig's loss and teacher fields, PipelineConfig's
    Nbox and seed, with their defaults; `from_config` is how a run builds it."""

    lambda_c: float = TrainConfig.lambda_c
    lambda_sc: float = TrainConfig.lambda_sc
    consistency_class_reduction: str = TrainConfig.consistency_class_reduction
    confidence_threshold: float = TrainConfig.confidence_threshold
    confidence_form: str = TrainConfig.confidence_form
    scl_mode: str = TrainConfig.scl_mode
    num_pairs: int = TrainConfig.num_pairs
    relax_window: int = TrainConfig.relax_window
    ema_decay: float = TrainConfig.ema_decay
    teacher: str = TrainConfig.teacher
    rampup_steps: int = TrainConfig.rampup_steps
    scl_boxes: int = PipelineConfig.scl_boxes
    seed: int = PipelineConfig.seed

    @classmethod
    def from_config(cls, config: Config) -> StepConfig:
        """The step of a run's Config."""
        train = {
            field.name: getattr(config.train, field.name)
            for field in dataclasses.fields(cls)
            if hasattr(config.train, field.name)
        }
        return cls(**train, scl_boxes=config.pipeline.scl_boxes, seed=config.pipeline.seed)

    @property
    def semi_supervised(self) -> bool:
        """False for the supervised baseline (both unlabeled weights 0): no teacher work."""
        return self.lambda_c > 0 or self.lambda_sc > 0


def rampup_weight(step, rampup_steps: int):
    """exp(-5 (1 - t)^2) with t = min(step / rampup_steps, 1): the sigmoid-shaped ramp-up of
    unsupervised weights of Laine & Aila (2017) and Mean Teacher; 1 when rampup_steps is 0.

    Args:
      step: int scalar (tensor), the number of updates done so far.
    Returns:
      float32 scalar in (0, 1].
    """
    if rampup_steps == 0:
        return tf.constant(1.0)
    progress = tf.minimum(tf.cast(step, tf.float32) / float(rampup_steps), 1.0)
    return tf.exp(-5.0 * tf.square(1.0 - progress))


def _all_replicas_sum(value):
    """Sum of `value` over the replicas of the current step (itself without a strategy)."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def ema_update(teacher_weights, student_weights, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, for each pair of variables.

    Runs in a replica context: the update is applied once per variable copy, from the student
    value on the same device, through the strategy's cross-replica `update`.
    """

    def update(strategy):
        for teacher, student in zip(teacher_weights, student_weights):
            strategy.extended.update(
                teacher.value,
                lambda t, s: t.assign(decay * t + (1.0 - decay) * s),
                args=(student.value,),
                group=False,
            )

    tf.distribute.get_replica_context().merge_call(update)


@keras.saving.register_keras_serializable(package="scl_tf")
class SCLModel(keras.Model):
    """A student segmentation model and its EMA teacher.

    Args:
      student: segmentation model, float RGB [B, H, W, 3] -> float32 logits [B, H, W, C].
      teacher: a model of the same architecture (its weights become the student's at start).
      step_config: StepConfig.

    `call` runs the student. `train_step(batch)` takes one replica's part of a
    `scl_tf.data.pipeline` element and returns that replica's share of each logged value
    (sum the shares over replicas for the global values).
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        step_config: StepConfig = StepConfig(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(student.weights) != len(teacher.weights):
            raise ValueError("SCLModel: student and teacher have different architectures")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.step_config = step_config
        self.scl_seed = keras.random.SeedGenerator(step_config.seed)
        # The structured loss (student probs, teacher probs, box masks) -> scalar, with the
        # step's mode and seed, XLA-compiled: XLA fuses the box-wise Gram / sampling work; the
        # rest of the step stays on oneDNN, faster on CPU than a whole-step XLA compile.
        self.structured_loss = tf.function(self._structured_consistency, jit_compile=True)
        # Sub-models are built; Keras must not trace call() with made-up inputs.
        self.built = True

    def call(self, images, training=False):
        return self.student(images, training=training)

    def copy_student_to_teacher(self) -> None:
        """Teacher weights := student weights (at the start of a run)."""
        for teacher, student in zip(self.teacher.weights, self.student.weights):
            teacher.assign(student)

    def teacher_probabilities(self, u_a, u_b):
        """Teacher probabilities of u_a and u_b (no gradient): float32 [B, h, w, C] each."""
        network = self.teacher if self.step_config.teacher == "ema" else self.student
        probs = tf.nn.softmax(network(tf.concat([u_a, u_b], 0), training=False))
        probs = tf.stop_gradient(probs)
        return tf.split(probs, 2)

    def cutmix_batch(self, unlabeled):
        """The student's CutMix input and its target, from one replica's unlabeled batch.

        Returns:
          (u_m = mix(u_a, u_b) float32 [B, h, w, 3], target = mix(p_t(u_a), p_t(u_b))
          float32 [B, h, w, C] without gradient, box masks float32 [B, Nbox, h, w]).
        """
        u_a, u_b = unlabeled["u_a"], unlabeled["u_b"]
        mix, box_masks = cutmix_masks(
            unlabeled["boxes"], u_a.shape[1], u_a.shape[2], self.step_config.scl_boxes
        )
        teacher_a, teacher_b = self.teacher_probabilities(u_a, u_b)
        return paste(mix, u_a, u_b), paste(mix, teacher_a, teacher_b), box_masks

    def _structured_consistency(self, student_probs, teacher_probs, box_masks, confident=None):
        config = self.step_config
        return structured_consistency_loss(
            student_probs,
            teacher_probs,
            box_masks,
            num_pairs=config.num_pairs,
            mode=config.scl_mode,
            seed=self.scl_seed,
            confident=confident,
        )

    def confidence_gate(self, target):
        """The confidence gate of the unlabeled terms, from the CutMixed teacher target.

        Args:
          target: float32 [B, h, w, C], this replica's teacher probabilities.
        Returns:
          (scale: float32 scalar multiplying both unlabeled terms, confident: float32
          [B, h, w] 0/1 mask of the pixels that count, or None for all of them, this replica's
          share of the global confident share). Off: (1, None, None).
        """
        config = self.step_config
        if not config.confidence_threshold:
            return tf.constant(1.0), None, None
        confident = tf.cast(
            tf.reduce_max(target, axis=-1) >= config.confidence_threshold, tf.float32
        )
        local_confident = tf.reduce_sum(confident)
        global_pixels = _all_replicas_sum(tf.cast(tf.size(confident), tf.float32))
        share = local_confident / global_pixels
        if config.confidence_form == "batch":
            return _all_replicas_sum(share), None, share
        return tf.constant(1.0), confident, share

    def compute_losses(self, batch):
        """Loss terms of one replica's batch, each as this replica's share of the global value.

        Returns:
          dict of float32 scalars: loss, loss_x, loss_c, loss_sc, the labeled pixel counts
          correct and scored (for the accuracy), and with --confidence_threshold the share of
          confident target pixels (CONFIDENT_SHARE).
        """
        config = self.step_config
        batch = apply_photometric(batch)
        labeled = batch["labeled"]
        images, labels = labeled["image"], labeled["label"]
        num_labeled = tf.shape(images)[0]
        student_input = images
        if config.semi_supervised:
            mixed, target, box_masks = self.cutmix_batch(batch["unlabeled"])
            student_input = tf.concat([images, mixed], 0)
        logits = self.student(student_input, training=True)
        labeled_logits = logits[:num_labeled]

        scored = tf.cast(tf.not_equal(labels, IGNORE_LABEL), tf.float32)
        local_scored = tf.reduce_sum(scored)
        global_scored = _all_replicas_sum(local_scored)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # relaxed_cross_entropy is a mean over this replica's scored pixels.
        loss_x = (
            relaxed_cross_entropy(labels, labeled_logits, config.relax_window)
            * local_scored
            / tf.maximum(global_scored, 1.0)
        )
        correct = tf.reduce_sum(
            scored
            * tf.cast(
                tf.equal(tf.argmax(labeled_logits, -1, output_type=tf.int32), labels), tf.float32
            )
        )
        zero = tf.constant(0.0)
        loss_c = loss_sc = zero
        gate, confident, confident_share = tf.constant(1.0), None, None
        if config.semi_supervised:
            student_probs = tf.nn.softmax(logits[num_labeled:])
            gate, confident, confident_share = self.confidence_gate(target)
            if config.lambda_c > 0:
                loss_c = (
                    consistency_loss(
                        student_probs, target, config.consistency_class_reduction, confident
                    )
                    / replicas
                )
            if config.lambda_sc > 0:
                loss_sc = (
                    self.structured_loss(student_probs, target, box_masks, confident) / replicas
                )
        unlabeled_loss = gate * (config.lambda_c * loss_c + config.lambda_sc * loss_sc)
        if config.rampup_steps:
            unlabeled_loss *= rampup_weight(self.optimizer.iterations, config.rampup_steps)
        loss = loss_x + unlabeled_loss
        shares = {
            "loss": loss,
            "loss_x": loss_x,
            "loss_c": loss_c,
            "loss_sc": loss_sc,
            "correct": correct,
            "scored": local_scored,
        }
        if confident_share is not None:
            shares[CONFIDENT_SHARE] = confident_share
        return shares

    def train_step(self, batch):
        """One optimisation step on one replica's batch; returns its shares (see class doc)."""
        with tf.GradientTape() as tape:
            shares = self.compute_losses(batch)
            scaled = self.optimizer.scale_loss(shares["loss"])
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        ema_update(self.teacher.weights, self.student.weights, self.step_config.ema_decay)
        return shares

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "step_config": dataclasses.asdict(self.step_config),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        step_config = StepConfig(**config.pop("step_config"))
        return cls(student, teacher, step_config, **config)
