"""Model: ties a network, a learning rule and an optimiser; train / predict / evaluate / save / load.

Gradient rules ("bptt", "bp") train an :class:`~cosim.network.SRNN` with Adam (or SGD) on
mini-batches; rule "stdp" trains a :class:`~cosim.networks.DiehlCook` network without
labels and assigns labels afterwards.

``Model`` talks to networks through a small protocol, not their types: every network has
``n_classes``, ``check_input(x)`` and ``predict(x)`` (labels); gradient rules need
``weights``, ``bias_out`` and ``set_weights`` (plus what the rule itself reads); an
unsupervised rule (one with ``fit``) needs ``assign_labels`` and ``evaluate``. A model file
names its network type, and :data:`NETWORK_FILES` holds one (save, load) pair per type.

Training with a physical crossbar backend (``SRNN(..., crossbar=Compact(...))``) is
hardware-aware: the forward pass reads the arrays (IR drop included), the backward pass is
the exact gradient through the wires and the mapping (``cosim.crossbar.adjoint``), and
after every update the arrays are reprogrammed.

A saved model is one ``.npz`` file (written to a temporary file and renamed): the weights,
a JSON header with the hyper-parameters, neuron types, crossbar settings and the cosim
version, and a SHA-256 over all of it so a corrupt file is detected on load.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from . import __version__
from . import _validate as check
from ._io import write_bytes
from .errors import ModelFileError, TrainingDivergedError
from .learning.bp import BP
from .learning.bptt import BPTT, RateRegularizer
from .crossbar import from_spec, to_spec
from .data import MAX_STEPS
from .learning.optim import make_optimizer
from .network import SRNN

__all__ = ["Model", "MAX_EPOCHS", "DIVERGENCE_FACTOR", "NETWORK_FILES", "UnknownRule"]

#: more epochs than anyone can wait for: refused at once rather than run "forever"
MAX_EPOCHS = 10**6
#: a mini-batch loss this many times above the first one (or non-finite, or any float
#: overflow in the update) means training diverged: the step is not applied
DIVERGENCE_FACTOR = 1e3

FORMAT = "cosim-model"
FORMAT_VERSION = 1
RULES = {"bptt": BPTT, "bp": BP}
#: the rule names a model file may hold ("custom": a rule object, not stored)
_RULE_NAMES = frozenset(RULES) | {"stdp"}


class UnknownRule:
    """The rule of a model trained with a custom rule object, which a model file cannot hold
    (files never choose code): the model predicts and evaluates, and training asks for the
    rule instead of silently substituting another one."""

    name = "custom"

    def gradients(self, net, x, labels):
        raise ValueError("this model was trained with a custom rule, which a model file does "
                         "not store: pass it again, Model.load(path, rule=YourRule()), to train")


#: the methods and attributes each kind of rule needs from its network (the protocol)
_GRADIENT_API = ("weights", "bias_out", "set_weights", "n_classes", "check_input", "predict")
_UNSUPERVISED_API = ("assign_labels", "evaluate", "n_classes", "check_input", "predict")


def _make_rule(rule):
    if isinstance(rule, str):
        key = check.choice("rule", rule, _RULE_NAMES)
        if key == "stdp":
            from .learning.stdp import STDPRule
            return STDPRule()
        return RULES[key]()
    if hasattr(rule, "gradients") or hasattr(rule, "fit"):
        return rule
    raise TypeError(f"rule must be 'bptt', 'bp', 'stdp' or a rule object, got {type(rule).__name__}")


class Model:
    """A trainable spiking network.

    Parameters
    ----------
    network : an :class:`SRNN` (rules "bptt", "bp") or a ``DiehlCook`` network (rule "stdp"),
        or any network with what the rule needs (see the module docstring).
    rule : "bptt", "bp", "stdp" or a rule object with ``gradients(net, x, labels)`` (or,
        unsupervised, ``fit(net, x, progress)``).
    lr : learning rate (Adam by default); cosine-annealed to 0 over the epochs of a
        ``train`` call when ``schedule="cosine"``.
    batch_size : mini-batch size.
    seed : int or Generator for shuffling.
    optimizer : "adam" or "sgd".
    rate_reg, rate_target : firing-rate regularisation strength and target rate.
    """

    def __init__(self, network, rule="bptt", lr=1e-2, batch_size=32, seed=0, optimizer="adam",
                 schedule="cosine", rate_reg=0.0, rate_target=0.01):
        self.network = network
        self.rule_name = rule if isinstance(rule, str) else getattr(rule, "name", type(rule).__name__)
        self.rule = _make_rule(rule)
        self.lr = check.positive("lr", lr)
        self.batch_size = check.integer("batch_size", batch_size, minimum=1)
        self.seed = seed
        self.optimizer_name = check.choice("optimizer", optimizer, ("adam", "sgd"))
        self.schedule = check.choice("schedule", schedule, ("cosine", "constant"))
        self.rate_reg = RateRegularizer(rate_reg, rate_target)
        if hasattr(self.rule, "rate_reg") and rate_reg:
            self.rule.rate_reg = self.rate_reg
        self._is_unsupervised = hasattr(self.rule, "fit")
        needs = _UNSUPERVISED_API if self._is_unsupervised else _GRADIENT_API
        missing = [name for name in needs if not hasattr(network, name)]
        if missing:
            kind = ("an unsupervised network such as cosim.networks.DiehlCook"
                    if self._is_unsupervised else "a gradient-trained network such as SRNN")
            raise TypeError(f"rule {self.rule_name!r} needs {kind}; {type(network).__name__} "
                            f"lacks {', '.join(missing)}")
        self._rng = check.rng(seed)
        self._optimizer = None
        #: timesteps per sample of the data :meth:`train` last saw (None: not trained here);
        #: saved with the model so that ``cosim predict`` encodes test data the same way
        self.steps = None

    # -- input checks ------------------------------------------------------------------------
    def _check_labels(self, y, n):
        return check.labels("y", y, n, self.n_classes)

    @property
    def n_classes(self) -> int:
        return self.network.n_classes

    def _check_x(self, x):
        return self.network.check_input(x)

    # -- training ----------------------------------------------------------------------------
    def train(self, x, y, epochs=10, progress=True, validation=None):
        """Train; returns ``{"loss": [...], "accuracy": [...], "val_accuracy": [...]}`` per epoch.

        ``x`` is a spike array (N, T, n_in) or an object with ``sample(epoch)`` returning one
        (e.g. :class:`cosim.data.EncodedImages`, fresh spikes every epoch). ``validation``
        is an optional ``(x_val, y_val)`` evaluated after each epoch.
        """
        epochs = check.count("epochs", epochs, minimum=1, maximum=MAX_EPOCHS)
        resample = hasattr(x, "sample")
        first = x.sample(0) if resample else x
        first = self._check_x(first)
        y = self._check_labels(y, first.shape[0])
        self.steps = int(first.shape[1])
        if validation is not None:
            x_val = self._check_x(validation[0])
            y_val = self._check_labels(validation[1], x_val.shape[0])
        if self._is_unsupervised:
            return self._train_unsupervised(x, first, y, epochs, progress, validation)

        from ._alloc import keep_freed_memory

        keep_freed_memory()      # the same large arrays are freed and reallocated each batch
        net = self.network
        if self._optimizer is None:
            self._optimizer = make_optimizer(self.optimizer_name, self.lr)
        history = {"loss": [], "accuracy": [], "val_accuracy": []}
        n = first.shape[0]
        loss_limit = None
        n_batches = -(-n // self.batch_size)
        report = check.progress_callback(progress)
        desc, total, done = f"train ({self.rule_name})", epochs * n_batches, 0
        for epoch in range(epochs):
            xe = first if epoch == 0 else (self._check_x(x.sample(epoch)) if resample else first)
            if self.schedule == "cosine":
                self._optimizer.lr = self.lr * 0.5 * (1.0 + np.cos(np.pi * epoch / epochs))
            order = self._rng.permutation(n)
            losses, correct = [], 0
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                # overflow is detected right below and reported as divergence
                with np.errstate(over="ignore", invalid="ignore"):
                    loss, grads, record = self.rule.gradients(net, xe[idx], y[idx])
                if loss_limit is None and np.isfinite(loss):
                    loss_limit = DIVERGENCE_FACTOR * max(float(loss), 1.0)
                if not np.isfinite(loss) or not loss <= loss_limit or \
                        not all(np.all(np.isfinite(g)) for g in grads.values()):
                    raise TrainingDivergedError(
                        f"training diverged: the loss became {loss:.3g} in epoch {epoch + 1} "
                        f"(limit {loss_limit:.3g} = {DIVERGENCE_FACTOR:g} x the first "
                        f"batch's); the weights of the last good step were kept (try a "
                        f"smaller lr, now {self.lr:g})" if loss_limit is not None else
                        f"training diverged: the loss became {loss} in epoch {epoch + 1}")
                self._apply(grads)
                losses.append(loss)
                correct += int(np.sum(record.logits.argmax(axis=1) == y[idx]))
                done += 1
                report(desc, done, total, epoch=epoch + 1, loss=float(np.mean(losses)))
            history["loss"].append(float(np.mean(losses)))
            history["accuracy"].append(correct / n)
            if validation is not None:
                history["val_accuracy"].append(self.evaluate(x_val, y_val))
        return history

    def _apply(self, grads):
        net = self.network
        params = net.weights
        params["bias_out"] = net.bias_out.copy()
        try:
            with np.errstate(over="raise", invalid="raise"):
                self._optimizer.step(params, grads)
        except FloatingPointError as exc:
            raise TrainingDivergedError(f"training diverged: the weight update overflowed "
                                        f"({exc}); kept the last good weights (try a smaller "
                                        f"lr, now {self.lr:g})") from None
        bias = params.pop("bias_out")
        for key, value in params.items():
            if not np.all(np.isfinite(value)):
                raise TrainingDivergedError(f"weights['{key}'] became non-finite; kept the last good weights")
        net.set_weights(params, bias_out=bias)

    def _train_unsupervised(self, x, first, y, epochs, progress, validation):
        history = {"loss": [], "accuracy": [], "val_accuracy": []}
        for epoch in range(epochs):
            xe = first if epoch == 0 or not hasattr(x, "sample") else self._check_x(x.sample(epoch))
            self.rule.fit(self.network, xe, progress=progress)
            self.network.assign_labels(xe, y)
            # a network that scored its labels while assigning them saves a second pass
            accuracy = getattr(self.network, "label_accuracy_", None)
            history["loss"].append(float("nan"))
            history["accuracy"].append(self.network.evaluate(xe, y) if accuracy is None
                                       else accuracy)
            if validation is not None:
                history["val_accuracy"].append(self.evaluate(*validation))
        return history

    # -- inference ---------------------------------------------------------------------------
    def predict(self, x, batch_size=256, progress=None) -> np.ndarray:
        """Integer class labels (N,); ``progress(desc, done, total)`` after each batch."""
        x = self._check_x(x)
        batch_size = check.count("batch_size", batch_size)
        report = check.progress_callback(progress)
        out = []
        for i in range(0, x.shape[0], batch_size):
            out.append(np.asarray(self.network.predict(x[i:i + batch_size]), dtype=np.int64))
            report("predict", min(i + batch_size, x.shape[0]), x.shape[0])
        return np.concatenate(out)

    def evaluate(self, x, y) -> float:
        """Accuracy in [0, 1]."""
        x = self._check_x(x)
        y = self._check_labels(y, x.shape[0])
        return float(np.mean(self.predict(x) == y))

    # -- persistence -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the model to one file atomically (temp file + rename)."""
        path = Path(path)
        arrays, header = self._state()
        header.update({"format": FORMAT, "format_version": FORMAT_VERSION,
                       "cosim_version": __version__})
        header_bytes = json.dumps(header, sort_keys=True).encode()
        digest = _digest(header_bytes, arrays)
        buffer = io.BytesIO()
        np.savez(buffer, __header__=np.frombuffer(header_bytes, dtype=np.uint8),
                 __sha256__=np.frombuffer(digest.encode(), dtype=np.uint8), **arrays)
        return write_bytes(path, buffer.getvalue())

    def _state(self):
        net = self.network
        header = {"rule": self.rule_name if self.rule_name in _RULE_NAMES else "custom",
                  "lr": self.lr, "batch_size": self.batch_size, "optimizer": self.optimizer_name,
                  "schedule": self.schedule, "seed": self.seed if isinstance(self.seed, int) else None,
                  "rate_reg": self.rate_reg.strength, "rate_target": self.rate_reg.target,
                  "steps": self.steps}
        kind = type(net).__name__
        if kind not in NETWORK_FILES:
            raise TypeError(f"cannot save a {kind} network: model files know "
                            f"{sorted(NETWORK_FILES)}")
        network_header, arrays = NETWORK_FILES[kind][0](net)
        header["network"] = kind
        header.update(network_header)
        return arrays, header

    @classmethod
    def load(cls, path, crossbar=None, rule=None) -> "Model":
        """Read a model written by :meth:`save`; ``crossbar`` overrides the saved backend.

        ``rule`` gives the rule object of a model trained with a custom rule (a file holds
        no code); without it such a model predicts, and ``train`` asks for the rule.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ModelFileError(f"{path} is not a readable cosim model file ({exc})") from exc
        if "__header__" not in contents or "__sha256__" not in contents:
            raise ModelFileError(f"{path} is not a cosim model file (no cosim header)")
        header_bytes = contents.pop("__header__").tobytes()
        stored = contents.pop("__sha256__").tobytes().decode(errors="replace")
        if _digest(header_bytes, contents) != stored:
            raise ModelFileError(f"{path} is corrupt: its checksum does not match its contents")
        try:
            header = json.loads(header_bytes)
        except (ValueError, RecursionError) as exc:
            raise ModelFileError(f"{path}: model header is not valid JSON ({exc})") from None
        _check_header(path, header)
        if header["format_version"] > FORMAT_VERSION:
            raise ModelFileError(f"{path} was written by a newer cosim "
                                 f"({header['cosim_version'][:20]}, format "
                                 f"{header['format_version']} > {FORMAT_VERSION})")
        network = _rebuild_network(header, contents, crossbar)
        saved_rule = header["rule"]
        if saved_rule not in _RULE_NAMES | {"custom"}:
            raise ModelFileError(f"{path}: model header rule {saved_rule[:20]!r} is not one of "
                                 f"{sorted(_RULE_NAMES | {'custom'})}")
        if rule is None:
            rule = UnknownRule() if saved_rule == "custom" else saved_rule
        steps = header.get("steps")          # absent in older files
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or not 1 <= steps <= MAX_STEPS):
            raise ModelFileError(f"{path}: model header 'steps' must be an integer in "
                                 f"[1, {MAX_STEPS}] or null, got {str(steps)[:20]!r}")
        try:
            model = cls(network, rule=rule, lr=header["lr"], batch_size=header["batch_size"],
                        seed=header["seed"] or 0, optimizer=header["optimizer"],
                        schedule=header["schedule"], rate_reg=header["rate_reg"],
                        rate_target=header["rate_target"])
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: model header holds a bad value: {exc}") from None
        model.steps = steps
        return model

    def __repr__(self):
        return f"Model({self.network!r}, rule={self.rule_name!r}, lr={self.lr})"


def _digest(header_bytes: bytes, arrays: dict) -> str:
    h = hashlib.sha256(header_bytes)
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------- network file formats
# save(net) -> (header entries, arrays); load(header, arrays, crossbar) -> network. The
# header is untrusted data on load: ``load`` validates it (a crossbar spec goes through
# cosim.crossbar.from_spec).

def _save_srnn(net):
    arrays = {f"w_{k}": v for k, v in net.weights.items()}
    arrays.update(bias_out=net.bias_out, delay_in=net.delays["in"], delay_rec=net.delays["rec"])
    return ({"network_config": net.get_config(), "neuron_types": net.neuron_types.tolist(),
             "crossbar": to_spec(net.crossbar)}, arrays)


def _load_srnn(header, contents, crossbar):
    backend = crossbar if crossbar is not None else from_spec(header["crossbar"],
                                                              where="crossbar")
    _check_srnn_sizes(header["network_config"], contents)
    return SRNN.from_config(
        header["network_config"],
        {"in": contents["w_in"], "rec": contents["w_rec"], "out": contents["w_out"]},
        contents["bias_out"], {"in": contents["delay_in"], "rec": contents["delay_rec"]},
        crossbar=backend)


def _save_diehl_cook(net):
    state = net.get_state()
    config = {k: v for k, v in state.items() if not isinstance(v, np.ndarray) and v is not None}
    return ({"network_config": config},
            {f"state_{k}": v for k, v in state.items() if isinstance(v, np.ndarray)})


def _load_diehl_cook(header, contents, crossbar):
    from .networks import DiehlCook

    state = dict(header["network_config"])
    state.update({k[len("state_"):]: v for k, v in contents.items() if k.startswith("state_")})
    state.setdefault("labels", None)
    return DiehlCook().set_state(state, crossbar=crossbar)


#: network type name (as written in a model file) -> (save, load)
NETWORK_FILES = {"SRNN": (_save_srnn, _load_srnn),
                 "DiehlCook": (_save_diehl_cook, _load_diehl_cook)}


def _rebuild_network(header, contents, crossbar):
    kind = header["network"]
    if kind not in NETWORK_FILES:
        raise ModelFileError(f"unknown network type {kind[:40]!r} in model file "
                             f"(known: {sorted(NETWORK_FILES)})")
    try:
        return NETWORK_FILES[kind][1](header, contents, crossbar)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(f"model file is inconsistent: {detail}") from None


def _check_srnn_sizes(config, contents):
    """The layer sizes of the header must be those of the stored weights (before building)."""
    if not isinstance(config, dict):
        raise ValueError("network_config must be a table")
    for key, (name, axis) in {"n_in": ("w_in", 0), "n_rec": ("w_rec", 0),
                              "n_out": ("w_out", 1)}.items():
        value, arr = config.get(key), contents.get(name)
        if arr is None or arr.ndim != 2:
            raise ValueError(f"weights {name!r} are missing or not a matrix")
        if isinstance(value, bool) or not isinstance(value, int) or value != arr.shape[axis]:
            raise ValueError(f"network_config {key} = {value!r} does not match the stored "
                             f"weights {name!r} of shape {arr.shape}")


#: header keys and the JSON types a model file must give them
_HEADER_TYPES = {"format": str, "format_version": int, "cosim_version": str, "rule": str,
                 "lr": (int, float), "batch_size": int, "optimizer": str, "schedule": str,
                 "seed": (int, type(None)), "rate_reg": (int, float),
                 "rate_target": (int, float), "network": str, "network_config": dict}


def _check_header(path, header):
    """Every header value has the type a cosim model file gives it (forged files fail here)."""
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is not a cosim model file (header is not a table)")
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a cosim model file (format {header.get('format')!r})")
    for key, kind in _HEADER_TYPES.items():
        if key not in header:
            raise ModelFileError(f"{path}: model header is missing {key!r}")
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ModelFileError(f"{path}: model header {key!r} must be {names}, got {value!r}")
    if header["network"] == "SRNN" and not isinstance(header.get("crossbar"), dict):
        raise ModelFileError(f"{path}: model header 'crossbar' must be a backend spec table")
