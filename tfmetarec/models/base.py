"""The contract every tfmetarec model follows.

A :class:`MetaModel` is a Keras subclassed model whose forward pass is a pure
function of named parameters: ``forward(params, features)``. ``call`` runs it
with the model's own variables; a learner runs it with adapted tensors (with a
leading task axis) to score a task after adaptation, with gradients flowing
through the adapted tensors back to the variables.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfmetarec.types import Features, Params


# Hyperparameters every model may be handed by ``experiment.build_model``; a model whose
# constructor does not take one of them ignores it in :meth:`MetaModel.from_spec`.
COMMON_HYPERPARAMETERS = ("embedding_dim", "hidden_units", "use_ids", "output_bias", "seed")
# What ``from_spec`` reads from a feature spec, by constructor argument.
SPEC_ARGUMENTS = ("user_vocab_sizes", "item_vocab_sizes", "num_genres", "num_users", "num_items")
_KERAS_ARGUMENTS = ("name", "dtype", "trainable")


class MetaModel(keras.Model):
    """Base class: named parameters, parameter groups and a pure forward pass."""

    @classmethod
    def hyperparameters(cls) -> tuple[str, ...]:
        """The constructor arguments of this model that are not read from a feature spec."""
        names = []
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in SPEC_ARGUMENTS:
                continue
            names.append(name)
        return tuple(names)

    @classmethod
    def from_spec(cls, spec: Any, **hparams: Any) -> MetaModel:
        """A model sized for the encoded features described by ``spec``.

        ``spec`` is any object with ``user_vocab_sizes``, ``item_vocab_sizes``,
        ``genres`` (or ``num_genres``), ``num_users`` and ``num_items`` (e.g. a
        ``tfmetarec.data.features.FeatureSpec``). Of those, only what the
        constructor takes is passed. ``hparams`` go to the constructor; the
        common ones (:data:`COMMON_HYPERPARAMETERS`) are dropped silently when
        this model does not take them, any other unknown name raises.
        """
        accepted = cls.hyperparameters()
        signature = inspect.signature(cls.__init__).parameters
        genres = getattr(spec, "genres", None)
        values = {
            "user_vocab_sizes": tuple(int(v) for v in spec.user_vocab_sizes),
            "item_vocab_sizes": tuple(int(v) for v in spec.item_vocab_sizes),
            "num_genres": len(genres) if genres is not None else int(getattr(spec, "num_genres", 0)),
            "num_users": int(spec.num_users),
            "num_items": int(spec.num_items),
        }
        kwargs = {k: v for k, v in values.items() if k in signature}
        unknown = [k for k in hparams if k not in accepted and k not in COMMON_HYPERPARAMETERS
                   and k not in _KERAS_ARGUMENTS]
        if unknown:
            raise TypeError(f"{cls.__name__} takes no hyperparameter(s) {unknown}; it takes {list(accepted)}.")
        kwargs.update({k: v for k, v in hparams.items() if k in accepted or k in _KERAS_ARGUMENTS})
        return cls(**kwargs)

    @classmethod
    def _arguments(cls):
        return [(name, p) for name, p in inspect.signature(cls.__init__).parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def keep_arguments(self, arguments: Mapping[str, Any]) -> None:
        """Store every constructor argument (from ``locals()``) as the attribute of the
        same name, which :meth:`get_config` reads back: sequences become lists of ints,
        flags and numbers take the type of their default."""
        for name, p in self._arguments():
            value = arguments[name]
            if isinstance(value, (list, tuple)):
                value = [int(v) for v in value]
            elif isinstance(p.default, bool):
                value = bool(value)
            elif isinstance(p.default, float):
                value = float(value)
            elif isinstance(p.default, int) and value is not None:
                value = int(value)
            setattr(self, name, value)

    def get_config(self) -> dict:
        """Keras' config plus every constructor argument, read from the attribute of
        the same name (each model stores its arguments under their own names)."""
        config = super().get_config()
        for name, _ in self._arguments():
            if not hasattr(self, name):
                raise AttributeError(f"{type(self).__name__} must keep its argument {name!r} as an attribute.")
            config[name] = getattr(self, name)
        return config

    def task_context(self, support: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Per-task values a model reads from the support besides its parameters
        (``{}`` here). Every learner puts them in the adapted state, so the query
        is scored with them; see :class:`~tfmetarec.models.hybrid.Hybrid`."""
        return {}

    def task_context_keys(self) -> tuple[str, ...]:
        """The keys :meth:`task_context` returns (none here)."""
        return ()

    def with_task_context(self, params: Mapping[str, tf.Tensor], state: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """``params`` plus the task-context entries found in a learner's ``state``."""
        return {**params, **{k: state[k] for k in self.task_context_keys() if k in state}}

    def parameters(self) -> dict[str, tf.Variable]:
        """The trainable variables by their (unique) names."""
        params: dict[str, tf.Variable] = {}
        for variable in self.trainable_variables:
            if variable.name in params:
                raise ValueError(f"Duplicate parameter name {variable.name!r} in {self.name}.")
            params[variable.name] = variable
        return params

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        """Named subsets of parameters a learner may adapt. Always has ``"all"``."""
        return {"all": tuple(self.parameters())}

    def resolve_params(self, adapt: str | Sequence[str]) -> tuple[str, ...]:
        """Parameter names for a group name or an explicit list of names."""
        groups = self.param_groups()
        if isinstance(adapt, str):
            if adapt not in groups:
                raise ValueError(
                    f"{type(self).__name__} has no parameter group {adapt!r}; "
                    f"choose from {sorted(groups)} or pass parameter names."
                )
            return groups[adapt]
        names = tuple(adapt)
        known = self.parameters()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"Unknown parameters {unknown}; the model has {sorted(known)}.")
        if not names:
            raise ValueError("At least one parameter must be adapted.")
        return names

    def forward(self, params: Params, features: Features) -> tf.Tensor:
        """Predicted ratings ``[...]`` for ``features`` under ``params``."""
        raise NotImplementedError  # abstract: each model defines its forward pass

    def call(self, features: Features) -> tf.Tensor:
        return self.forward(self.variable_values(), features)

    # -- optional hooks for learners that adapt a user *representation* --------------
    # Metric- and model-based learners build a per-task user state from the support
    # set instead of adapting weights. A model supports them by implementing the three
    # hooks below; the default raises a clear error naming the model.
    @property
    def user_state_dim(self) -> int | None:
        """Width of the user state ``forward_with_user_state`` takes (None: unsupported)."""
        return None

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        """The user state implied by user features alone: ``[..., user_state_dim]``."""
        raise NotImplementedError(f"{type(self).__name__} does not expose a user representation.")

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        """Item embeddings from item inputs: ``[..., item_dim]``."""
        raise NotImplementedError(f"{type(self).__name__} does not expose item representations.")

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        """Predicted ratings ``[T, N]`` with the user part replaced by ``user_state [T, D]``."""
        raise NotImplementedError(f"{type(self).__name__} cannot score from an external user state.")

    def variable_values(self) -> dict[str, tf.Tensor]:
        """The current parameter values as tensors (what ``call`` uses)."""
        return {name: v.value for name, v in self.parameters().items()}


def check_features(features: Mapping[str, tf.Tensor], required: Sequence[str], model: str) -> None:
    """Raise a clear error when a feature batch lacks an input the model needs."""
    missing = [k for k in required if k not in features]
    if missing:
        raise KeyError(f"{model} needs inputs {list(required)}; missing {missing}.")
