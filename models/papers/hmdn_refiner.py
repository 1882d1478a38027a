"""HMDN's Hierarchical Multi-Distribution Representation Refining (HMDRR) module (Lou et al. 2024, §2.3).

* **Embedding Layer** (§2.3.1): the distribution features of the spec (e.g. scenario, gender, city,
  new-user flag) get their own embedding tables, and their vectors are concatenated as x_b.
* **Residual Quantization Layer** (§2.3.2, eq. 1-4): level d finds the code c_d whose embedding is
  nearest to the residual r_{d-1} (r_0 = x_b), and passes r_d = r_{d-1} - e(c_d) on; the hierarchical
  representation is s_D = sum_d e(c_d). Every level has its own codebook of K codes ("all codebooks",
  "the codebook of each level").
* **Dual-View Hierarchical Representation** (§2.3.3): ``implicit`` quantizes x_b itself over D levels;
  ``explicit`` gives each distribution feature its own level (D = number of distribution features, in
  the order the feature config lists them, which should go from coarse to fine), so a level's code only
  depends on one distribution type.
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

EXTRACTIONS = ("implicit", "explicit")


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


class HierarchicalRepresentationRefiner(tf.keras.layers.Layer):
    """The HMDRR module: distribution embedding -> x_b -> residual quantization -> s_D and L_rq.

    ``call(features)`` (the transformed feature dict) returns a :class:`RefinedRepresentation`.
    """

    def __init__(self, spec: FeatureSpec, extraction: str = "implicit", depth: int = 6, codebook_size: int = 64,
                 beta: float = 0.25, dim: int = 16, numeric: str = "project", embeddings_l2: float = 0.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if extraction not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")
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
        self.depth = len(self.names) if extraction == "explicit" else int(depth)
        self.code_dim = int(dim) if extraction == "explicit" else sum(widths.values())
        self.codebook_size = int(codebook_size)
        self.beta = float(beta)

    def build(self, input_shape) -> None:
        # Same scale as the embeddings, so that the first nearest-code searches are meaningful.
        self.codebooks = self.add_weight(name="codebooks", shape=(self.depth, self.codebook_size, self.code_dim),
                                         initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        super().build(input_shape)

    def _parts(self, features: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        embedded = self.embedding(features)
        return [embedded[n] for n in self.names]

    def _level(self, d: int, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One level: (code [B], e(c_d) [B, z], eq. 5 terms of this level [B])."""
        code, e = nearest_code(x, self.codebooks[d])
        loss = (tf.reduce_sum(tf.square(e - tf.stop_gradient(x)), axis=-1)
                + self.beta * tf.reduce_sum(tf.square(tf.stop_gradient(e) - x), axis=-1))
        return code, e, loss

    def call(self, features: Mapping[str, tf.Tensor]) -> RefinedRepresentation:
        parts = self._parts(features)
        levels = []
        if self.extraction == "implicit":
            unquantized = residual = tf.concat(parts, axis=-1)  # r_0 = x_b
            for d in range(self.depth):
                levels.append(self._level(d, residual))
                residual = residual - levels[-1][1]  # eq. 3
        else:
            levels = [self._level(d, part) for d, part in enumerate(parts)]
            unquantized = tf.add_n(parts)
        codes, quantized, losses = zip(*levels)
        s_d = tf.add_n(quantized)  # eq. 4
        # Straight-through: the value of s_D, the gradient of the (summed) level inputs.
        representation = unquantized + tf.stop_gradient(s_d - unquantized)
        return RefinedRepresentation(representation, tf.stack(codes, axis=-1), tf.reduce_mean(tf.add_n(losses)))
