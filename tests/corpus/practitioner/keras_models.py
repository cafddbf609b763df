"""Keras 3 models saved with model.save (.keras), the legacy HDF5 writer and save_weights,
including a custom layer registered with register_keras_serializable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .registry import writes


def _custom_layer() -> Any:
    import keras

    @keras.saving.register_keras_serializable(package="credit_scoring")
    class ScaledDense(keras.layers.Layer):  # type: ignore[misc]
        def __init__(self, units: int = 4, scale: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units, self.scale = units, scale

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(
                shape=(input_shape[-1], self.units), initializer="glorot_uniform"
            )

        def call(self, inputs: Any) -> Any:
            return keras.ops.matmul(inputs, self.kernel) * self.scale

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units, "scale": self.scale}

    return ScaledDense


def _sequential() -> Any:
    import keras

    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _functional() -> Any:
    import keras

    tokens = keras.Input((6,), dtype="int32", name="tokens")
    numbers = keras.Input((3,), name="numbers")
    x = keras.layers.Embedding(20, 4)(tokens)
    x = keras.layers.LSTM(4)(x)
    x = keras.layers.Concatenate()([x, keras.layers.Normalization()(numbers)])
    out = keras.layers.Dense(1, activation="sigmoid", name="score")(x)
    model = keras.Model([tokens, numbers], out)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    return model


def _conv() -> Any:
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@writes("keras/sequential.keras", "keras", "model.save('.keras') of a compiled Sequential")
def _seq(path: Path) -> None:
    _sequential().save(path)


@writes(
    "keras/functional.keras",
    "keras",
    "model.save('.keras') of a two-input functional model (Embedding, LSTM, Normalization)",
)
def _func(path: Path) -> None:
    _functional().save(path)


@writes("keras/conv.keras", "keras", "model.save('.keras') of a small CNN with Rescaling")
def _cnn(path: Path) -> None:
    _conv().save(path)


@writes(
    "keras/custom-layer.keras",
    "keras",
    "model.save('.keras') with a layer registered by register_keras_serializable",
)
def _custom(path: Path) -> None:
    import keras

    layer = _custom_layer()
    model = keras.Sequential(
        [keras.Input((4,)), layer(units=3, scale=0.5), keras.layers.Activation("gelu")]
    )
    model.save(path)


@writes("keras/legacy.h5", "keras", "model.save('.h5'): the legacy HDF5 format", ("keras", "h5py"))
def _h5(path: Path) -> None:
    _sequential().save(path)


@writes("keras/model.weights.h5", "keras", "model.save_weights('.weights.h5')", ("keras", "h5py"))
def _weights(path: Path) -> None:
    _functional().save_weights(path)


@writes(
    "keras/custom-functions.keras",
    "keras",
    "model.save('.keras') compiled with a registered custom activation, loss and metric",
)
def _custom_functions(path: Path) -> None:
    import keras

    @keras.saving.register_keras_serializable(package="credit_scoring", name="scaled_tanh")
    def scaled_tanh(x: Any) -> Any:
        return 1.7159 * keras.ops.tanh(0.666 * x)

    @keras.saving.register_keras_serializable(package="credit_scoring", name="focal_loss")
    def focal_loss(y_true: Any, y_pred: Any) -> Any:
        bce = keras.losses.binary_crossentropy(y_true, y_pred)
        return keras.ops.mean((1 - keras.ops.exp(-bce)) ** 2 * bce)

    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation=scaled_tanh),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss=focal_loss, metrics=["auc"])
    model.save(path)
