"""Every layer of every registered model is traced without AutoGraph (``msrec.models.layers.base``):
a layer written on tf.keras.layers.Layer directly would bring back its source rewrite on every trace."""
import pytest
import tensorflow as tf

from msrec.models.registry import build_model, model_names
from support.models import batch, small_spec


@pytest.mark.parametrize("name", model_names())
def test_no_msrec_layer_of_the_model_uses_autograph(name: str) -> None:
    spec = small_spec()
    model = build_model(name, spec, {})
    features, _ = batch(spec, 8)
    model(features, training=False)  # builds every sublayer
    ours = [m for m in [model, *model.submodules]
            if isinstance(m, tf.keras.layers.Layer) and type(m).__module__.startswith("msrec.")]
    assert len(ours) > 1
    autographed = sorted({type(m).__name__ for m in ours if m._should_use_autograph()})
    assert not autographed, f"{name}: {autographed} derive from tf.keras.layers.Layer, not msrec's Layer"
