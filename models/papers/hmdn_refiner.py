"""HMDN's Hierarchical Multi-Distribution Representation Refining (HMDRR) module (Lou et al. 2024, §2.3).

* **Embedding Layer** (§2.3.1): the distribution features of the spec (e.g. scenario, gender, city,
  new-user flag) get their own embedding tables, and their vectors are concatenated as x_b.
* **Residual Quantization Layer** (§2.3.2, eq. 1-4): level d finds the code c_d whose embedding is
  nearest to the residual r_{d-1} (r_0 = x_b), and passes r_d = r_{d-1} - e(c_d) on; the hierarchical
  representation is s_D = sum_d e(c_d). Every level has its own codebook of K codes ("all codebooks",
  "the codebook of each level").
* **Dual-View Hierarchical Representation** (§2.3.3): ``implicit`` quantizes x_b itself over D levels;
  ``explicit`` places each distribution feature x_d in its own codebook level of one hierarchy (D =
  number of distribution features, in the order the feature config lists them, which should go from
  coarse to fine). ``explicit_mode`` reads "distinct codebook levels" in one of two ways:
  - ``hierarchical`` (default): the levels stay a residual quantizer, level d quantizes x_d plus what
    the levels above left unexplained, r_{d-1} (r_0 = 0, r_d = x_d + r_{d-1} - e(c_d)), so a level's
    code depends on its distribution type and, through the residual, on the coarser ones;
  - ``independent``: level d quantizes x_d alone, one vector quantizer per distribution type.
  On the planted data of :mod:`msrec.models.synthetic` (hmdn_mmoe, 6000 examples, 4 epochs, 3 seeds)
  the two measured the same within noise (test AUC 0.7547 hierarchical, 0.7564 independent, seeds
  spread by 0.015; implicit 0.7532), so the default is the reading that keeps §2.3.2's hierarchy.
  That data plants no signal in the non-scenario distribution features, so it cannot reward either.
  On the generated world (population x scenario-type slopes; `msrec bench models --days 3
  --impressions-per-day 40000`, FC from a blessed SAR-Net, 3 seeds, overall eval AUC), the paper's
  Table 2 rows: hmdn_mmoe implicit 0.6434 +- 0.0044, explicit hierarchical 0.6468 +- 0.0015, explicit
  independent 0.6446 +- 0.0036, refiner off 0.6472 +- 0.0037 (registry mmoe 0.6483 +- 0.0016);
  hmdn_pepnet implicit 0.6471 +- 0.0014, explicit 0.6453 +- 0.0027, off 0.6467 +- 0.0031. The
  refiner does not beat its backbone there: every difference is within one or two seed deviations,
  and most runs select epoch 1 of one 40k-impression training day, too little for the codebooks.
* **Codebook initialisation**: the first training batch sets every level's codebook to K of that
  level's inputs (see ``_codebook``). With the random initialisation codes died: over the same runs
  the implicit first level used 16% of its 64 codes and the explicit levels at most 11%; with it 63%,
  and the deeper hierarchical explicit levels 15-17% (their inputs take few distinct values: one
  distribution feature of 4-6 values plus a residual).
* **L_rq** (eq. 5): sum_d ||e(c_d) - sg[x_b^(d)]||^2 + beta * sum_d ||sg[e(c_d)] - x_b^(d)||^2, with
  x_b^(d) the input of level d, averaged over the batch. The first term trains the codebooks, the
  second commits the inputs to their codes; gradients stop exactly where eq. 5 writes sg.

The argmin has no gradient, so s_D reaches the backbone through the straight-through estimator: its
value is sum_d e(c_d), its gradient flows to the level inputs as if quantization were the identity
(van den Oord et al. 2017). The codebooks therefore learn from L_rq only.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.layers import FeatureEmbedding
from msrec.models.layers.base import Layer

EXTRACTIONS = ("implicit", "explicit")
EXPLICIT_MODES = ("hierarchical", "independent")


class RefinedRepresentation(NamedTuple):
    representation: tf.Tensor  # s_D [B, z] (straight-through)
    codes: tf.Tensor  # int32 [B, D]: the code of each level
    rq_loss: tf.Tensor  # scalar L_rq (eq. 5), averaged over the batch


def distribution_spec(spec: FeatureSpec) -> FeatureSpec:
    """The sub-spec of ``spec`` that holds only its distribution features (no sequences)."""
    names = tuple(spec.distribution_features)
    if not names:
        raise ValueError("HMDN needs distribution features: list them under distribution_features "
                         "in the feature config")
    unknown = [n for n in names if n not in spec.cardinality and n not in spec.numeric]
    if unknown:
        raise ValueError(f"distribution features {unknown} are neither categorical nor numeric features")
    return dataclasses.replace(
        spec,
        cardinality={n: c for n, c in spec.cardinality.items() if n in names},
        groups={g: tuple(n for n in members if n in names) for g, members in spec.groups.items()},
        numeric=tuple(n for n in spec.numeric if n in names),
        sequence={},
    )


def nearest_code(x: tf.Tensor, codebook: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Eq. 1: the code of the nearest codebook embedding. x [B, z], codebook [K, z] -> (codes [B], e [B, z])."""
    distances = (tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
                 - 2.0 * tf.matmul(x, codebook, transpose_b=True)
                 + tf.reduce_sum(tf.square(codebook), axis=-1)[tf.newaxis, :])
    codes = tf.argmin(distances, axis=-1, output_type=tf.int32)
    return codes, tf.gather(codebook, codes)


class HierarchicalRepresentationRefiner(Layer):
    """The HMDRR module: distribution embedding -> x_b -> residual quantization -> s_D and L_rq.

    ``call(features)`` (the transformed feature dict) returns a :class:`RefinedRepresentation`.
    """

    def __init__(self, spec: FeatureSpec, extraction: str = "implicit", depth: int = 6, codebook_size: int = 64,
                 beta: float = 0.25, dim: int = 16, numeric: str = "project", embeddings_l2: float = 0.0,
                 explicit_mode: str = "hierarchical", **kwargs) -> None:
        super().__init__(**kwargs)
        if extraction not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")
        if explicit_mode not in EXPLICIT_MODES:
            raise ValueError(f"explicit_mode must be one of {EXPLICIT_MODES}, got {explicit_mode!r}")
        if depth < 1 or codebook_size < 1:
            raise ValueError(f"depth and codebook_size must be positive, got {depth} and {codebook_size}")
        self.names = tuple(spec.distribution_features)
        self.embedding = FeatureEmbedding(distribution_spec(spec), dim, numeric, embeddings_l2,
                                          name="distribution_embedding")
        # A numeric feature passed through as is ("concat") is one column wide, every other one dim.
        widths = {n: 1 if n in spec.numeric and numeric == "concat" else int(dim) for n in self.names}
        if extraction == "explicit" and len(set(widths.values())) > 1:
            raise ValueError(f"explicit extraction quantizes every distribution feature in one space, but their "
                             f"widths differ: {widths} (use numeric='project')")
        self.extraction = extraction
        self.explicit_mode = explicit_mode
        self.depth = len(self.names) if extraction == "explicit" else int(depth)
        self.code_dim = int(dim) if extraction == "explicit" else sum(widths.values())
        self.codebook_size = int(codebook_size)
        self.beta = float(beta)

    def build(self, input_shape) -> None:
        # Same scale as the embeddings until the first training batch replaces them (see _codebook).
        self.codebooks = self.add_weight(name="codebooks", shape=(self.depth, self.codebook_size, self.code_dim),
                                         initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        self.codebooks_initialized = self.add_weight(name="codebooks_initialized", shape=(), dtype=tf.bool,
                                                     initializer="zeros", trainable=False)
        super().build(input_shape)

    def _parts(self, features: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        embedded = self.embedding(features)
        return [embedded[n] for n in self.names]

    def _codebook(self, d: int, x: tf.Tensor, training: bool | None) -> tf.Tensor:
        """Level d's codebook; on the first training batch, first set to K of that level's inputs x.

        A random codebook leaves most codes dead: the inputs occupy a small region of the space, the
        few codes nearest to it win every argmin, and a code that is never chosen gets no gradient
        from L_rq, so it never moves closer. Codes drawn from the inputs (without replacement when the
        batch holds K of them) all start where the data is (as k-means++-free k-means starts).
        """
        if not training:
            return self.codebooks[d]

        def from_batch() -> tf.Tensor:
            n = tf.shape(x)[0]
            rows = tf.gather(tf.random.shuffle(tf.range(n)), tf.range(self.codebook_size) % n)
            with tf.control_dependencies([self.codebooks[d].assign(tf.stop_gradient(tf.gather(x, rows)))]):
                return tf.identity(self.codebooks[d])  # read after the write: L_rq trains it from this batch on

        return tf.cond(self.codebooks_initialized, lambda: self.codebooks[d], from_batch)

    def _level(self, d: int, x: tf.Tensor, training: bool | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One level: (code [B], e(c_d) [B, z], eq. 5 terms of this level [B])."""
        code, e = nearest_code(x, self._codebook(d, x, training))
        loss = (tf.reduce_sum(tf.square(e - tf.stop_gradient(x)), axis=-1)
                + self.beta * tf.reduce_sum(tf.square(tf.stop_gradient(e) - x), axis=-1))
        return code, e, loss

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> RefinedRepresentation:
        parts = self._parts(features)
        levels = []
        if self.extraction == "implicit":
            unquantized = residual = tf.concat(parts, axis=-1)  # r_0 = x_b
            for d in range(self.depth):
                levels.append(self._level(d, residual, training))
                residual = residual - levels[-1][1]  # eq. 3
        else:
            residual = tf.zeros_like(parts[0])  # r_0: nothing left over above the first level
            for d, part in enumerate(parts):
                level_input = part + residual if self.explicit_mode == "hierarchical" else part
                levels.append(self._level(d, level_input, training))
                residual = level_input - levels[-1][1]
            # sum_d e(c_d) = sum_d x_d - r_D in both modes (hierarchical: the residuals telescope)
            unquantized = tf.add_n(parts)
        if training:
            self.codebooks_initialized.assign(True)
        codes, quantized, losses = zip(*levels)
        s_d = tf.add_n(quantized)  # eq. 4
        # Straight-through: the value of s_D, the gradient of the (summed) level inputs.
        representation = unquantized + tf.stop_gradient(s_d - unquantized)
        return RefinedRepresentation(representation, tf.stack(codes, axis=-1), tf.reduce_mean(tf.add_n(losses)))
