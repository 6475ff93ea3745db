"""Run configurations (TOML) for ``cosim train`` / ``cosim predict``.

A configuration has up to five tables; every key is optional and has the default shown::

    [data]
    dataset = "digits"        # sklearn's bundled 8x8 digits
    encoding = "rate"         # "rate" (64 inputs) or "rows" (8 inputs)
    T = 50                    # timesteps per sample (<= 1000000)
    seed = 0
    resample = true           # draw fresh rate-coded spikes every epoch
    path = ""                 # your own data: an .npz with x (N, T, n_in) and y (N,)
                              # (optional x_test, y_test); replaces dataset/encoding/T

    [network]
    n_rec = 100
    neuron = "alif"           # "if", "lif", "alif"
    n_adaptive = 50           # with "alif": the first n_adaptive units adapt, the rest are LIF
                              # (default n_rec // 2)
    tau_out = 20.0
    n_delay = 1
    seed = 0
    [network.neuron]          # neuron parameters: tau, thr, beta, tau_adaptation, reset, ...

    [training]
    rule = "bptt"             # "bptt", "bp"
    epochs = 30               # <= 1000000
    lr = 0.003
    batch_size = 32
    optimizer = "adam"        # "adam", "sgd"
    rate_reg = 0.0
    rate_target = 0.01

    [crossbar]
    backend = "ideal"         # "ideal", "compact", "spice"
    r_word = 1.0              # ohms per segment
    r_bit = 1.0
    v_read = 0.1
    read = "linear"           # "linear", "nonlinear"
    device_card = ""          # path to a TOML device card ("" = the default MoS2 card)
    levels = 0                # 0 = continuous conductance
    program_sigma = 0.0
    d2d_sigma = 0.0
    seed = 0                  # seed of programming variability and device spread
    max_array = [0, 0]        # tile size (rows, physical columns); [0, 0] = no tiling
    r_driver = 0.0            # ohm in series with every word-line source (needs r_word > 0)
    r_sense = 0.0             # ohm from every bit line's end to ground (0 = virtual ground)
    dac_bits = 0              # input DAC bits (0 = ideal) over [0, v_read * x_max]
    x_max = 1.0               # largest input the array accepts (1 for spikes)
    adc_bits = 0              # output ADC bits per physical column (0 = ideal)
    adc_range = 0.0           # ADC range in amperes (0 = "auto": calibrated at programming)
    adc_offset_sigma = 0.0    # ADC offset spread (fraction of the range), seeded
    adc_gain_sigma = 0.0      # ADC gain spread (relative), seeded
    adc_bipolar = false       # ADC window [-range, range] instead of [0, range]
    read_time = 1e-8          # seconds per read (energy = power x read_time)
    adc_energy = 0.0          # joule per ADC conversion
    dac_energy = 0.0          # joule per DAC conversion

    [output]
    model = "out/model.npz"

Errors name the table and key at fault (:class:`ConfigError`, a ``ValueError``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from .crossbar import backend_names
from .crossbar.compact import READS
from .data import MAX_STEPS
from .errors import CosimError

MAX_SIZE = 10**6              # units, delays and batch sizes beyond any machine
__all__ = ["ConfigError", "load_config", "DEFAULTS", "build_crossbar", "build_data",
           "build_network"]


class ConfigError(CosimError, ValueError):
    """A configuration file is unreadable or holds a bad key or value."""


DEFAULTS = {
    "data": {"dataset": "digits", "encoding": "rate", "T": 50, "seed": 0, "resample": True,
             "path": ""},
    "network": {"n_rec": 100, "neuron": "alif", "n_adaptive": 50, "tau_out": 20.0,
                "n_delay": 1, "seed": 0, "neuron_params": {}},
    "training": {"rule": "bptt", "epochs": 30, "lr": 0.003, "batch_size": 32,
                 "optimizer": "adam", "rate_reg": 0.0, "rate_target": 0.01},
    "crossbar": {"backend": "ideal", "r_word": 1.0, "r_bit": 1.0, "v_read": 0.1,
                 "read": "linear", "device_card": "", "levels": 0, "program_sigma": 0.0,
                 "d2d_sigma": 0.0, "seed": 0, "max_array": [0, 0], "r_driver": 0.0,
                 "r_sense": 0.0, "dac_bits": 0, "x_max": 1.0, "adc_bits": 0, "adc_range": 0.0,
                 "adc_offset_sigma": 0.0, "adc_gain_sigma": 0.0, "adc_bipolar": False,
                 "read_time": 1e-8, "adc_energy": 0.0, "dac_energy": 0.0},
    "output": {"model": "out/model.npz"},
}

CHOICES = {
    ("data", "dataset"): ("digits",), ("data", "encoding"): ("rate", "rows"),
    ("network", "neuron"): ("if", "lif", "alif"), ("training", "rule"): ("bptt", "bp"),
    ("training", "optimizer"): ("adam", "sgd"),
    ("crossbar", "backend"): backend_names(),
    ("crossbar", "read"): READS,
}
POSITIVE = {("data", "T"), ("network", "n_rec"), ("network", "tau_out"), ("network", "n_delay"),
            ("training", "epochs"), ("training", "lr"), ("training", "batch_size"),
            ("crossbar", "v_read")}
NON_NEGATIVE = {("network", "n_adaptive"), ("training", "rate_reg"), ("training", "rate_target"),
                ("crossbar", "r_word"), ("crossbar", "r_bit"), ("crossbar", "levels"),
                ("crossbar", "program_sigma"), ("crossbar", "d2d_sigma"), ("data", "seed"),
                ("network", "seed"), ("crossbar", "seed")}
NEURON_KEYS = {"tau": float, "thr": float, "beta": float, "tau_adaptation": float, "dt": float,
               "n_refractory": int, "reset": str, "noise_std": float}


def _type_name(t):
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list"}[t]


def _check_value(table, key, value, default):
    where = f"[{table}] {key}"
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is bool and not isinstance(value, bool) or \
            expected is not bool and (isinstance(value, bool) or not isinstance(value, expected)):
        raise ConfigError(f"config: {where} must be {_type_name(expected)}, got {value!r}")
    if (table, key) in CHOICES and value not in CHOICES[(table, key)]:
        raise ConfigError(f"config: {where} must be one of {list(CHOICES[(table, key)])}, "
                          f"got {value!r}")
    if isinstance(value, float) and value != value:
        raise ConfigError(f"config: {where} is NaN")
    if (table, key) in POSITIVE and not value > 0:
        raise ConfigError(f"config: {where} must be > 0, got {value!r}")
    if (table, key) in NON_NEGATIVE and value < 0:
        raise ConfigError(f"config: {where} must be >= 0, got {value!r}")
    if (table, key) == ("crossbar", "max_array"):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                      for v in value):
            raise ConfigError(f"config: {where} must be two integers >= 0 [rows, columns], "
                              f"got {value!r}")
    return value


def load_config(source) -> dict:
    """Read and validate a configuration (a path, a TOML string or a dict); fill defaults."""
    if isinstance(source, dict):
        raw = source
    else:
        text = None
        path = Path(source) if not (isinstance(source, str) and "\n" in source) else None
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"config: no such file {path}")
            text = path.read_text()
        else:
            text = source
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: not valid TOML ({exc})") from exc
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"config: unknown table(s) {sorted(unknown)}; "
                          f"known tables are {sorted(DEFAULTS)}")
    config = {}
    for table, defaults in DEFAULTS.items():
        given = raw.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"config: [{table}] must be a table")
        given = dict(given)
        if table == "network" and "neuron" in given and isinstance(given["neuron"], dict):
            given["neuron_params"] = given.pop("neuron")
        unknown = set(given) - set(defaults)
        if unknown:
            raise ConfigError(f"config: unknown key(s) {sorted(unknown)} in [{table}]; "
                              f"known keys are {sorted(defaults)}")
        section = {}
        for key, default in defaults.items():
            if key == "neuron_params":
                section[key] = _neuron_params(given.get(key, {}))
            else:
                section[key] = _check_value(table, key, given.get(key, default), default)
        config[table] = section
    net = config["network"]
    if "n_adaptive" not in raw.get("network", {}):
        net["n_adaptive"] = net["n_rec"] // 2          # default: half ALIF, half LIF
    if net["neuron"] != "alif" and "n_adaptive" in raw.get("network", {}):
        raise ConfigError("config: [network] n_adaptive applies only to neuron = \"alif\"")
    if net["n_adaptive"] > net["n_rec"]:
        raise ConfigError(f"config: [network] n_adaptive ({net['n_adaptive']}) exceeds n_rec "
                          f"({net['n_rec']})")
    if config["data"]["encoding"] == "rows" and config["data"]["T"] < 8:
        raise ConfigError("config: [data] T must be >= 8 for encoding = \"rows\"")
    from .model import MAX_EPOCHS

    if config["training"]["epochs"] > MAX_EPOCHS:
        raise ConfigError(f"config: [training] epochs must be <= {MAX_EPOCHS}, got "
                          f"{config['training']['epochs']}")
    if config["data"]["T"] > MAX_STEPS:
        raise ConfigError(f"config: [data] T must be <= {MAX_STEPS}, got {config['data']['T']}")
    for table, key in (("network", "n_rec"), ("network", "n_delay"), ("training", "batch_size")):
        if config[table][key] > MAX_SIZE:
            raise ConfigError(f"config: [{table}] {key} must be <= {MAX_SIZE}, got "
                              f"{config[table][key]}")
    data_path = config["data"]["path"]
    if data_path and not Path(data_path).is_file():
        raise ConfigError(f"config: [data] path: no such file {data_path}")
    if not config["output"]["model"].strip():
        raise ConfigError("config: [output] model must be a file path, got an empty string")
    try:
        periphery_params(config["crossbar"])
    except ValueError as exc:
        raise ConfigError(f"config: [crossbar] {exc}") from exc
    card = config["crossbar"]["device_card"]
    if card and not Path(card).is_file():
        raise ConfigError(f"config: [crossbar] device_card: no such file {card}")
    return config


def _neuron_params(given):
    if not isinstance(given, dict):
        raise ConfigError("config: [network.neuron] must be a table of neuron parameters")
    out = {}
    for key, value in given.items():
        if key not in NEURON_KEYS:
            raise ConfigError(f"config: unknown key {key!r} in [network.neuron]; "
                              f"known keys are {sorted(NEURON_KEYS)}")
        expected = NEURON_KEYS[key]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(f"config: [network.neuron] {key} must be {_type_name(expected)}, "
                              f"got {value!r}")
        out[key] = value
    return out


PERIPHERY_KEYS = ("r_driver", "r_sense", "dac_bits", "x_max", "adc_bits", "adc_range",
                  "adc_offset_sigma", "adc_gain_sigma", "adc_bipolar", "read_time", "adc_energy",
                  "dac_energy")


def periphery_params(section: dict) -> dict:
    """The periphery constructor arguments of a [crossbar] table (0 bits -> None = ideal,
    adc_range 0 -> "auto"), validated (ValueError naming the key and its range)."""
    from .crossbar.periphery import check_periphery

    params = {k: section[k] for k in PERIPHERY_KEYS}
    for key in ("dac_bits", "adc_bits"):
        params[key] = params[key] or None
    params["adc_range"] = params["adc_range"] or "auto"
    check_periphery(**params)
    return params


def build_crossbar(section: dict, **local):
    """A crossbar backend from a validated [crossbar] table (``local``: e.g. ``cache=``)."""
    from .crossbar import build

    params = {k: section[k] for k in ("r_word", "r_bit", "v_read", "read", "program_sigma",
                                      "d2d_sigma", "seed")}
    params.update(periphery_params(section))
    params["levels"] = section["levels"] or None
    if section["device_card"]:
        from .devices import Memtransistor
        params["device"] = Memtransistor.from_card(section["device_card"])
    rows, cols = section["max_array"]
    return build(section["backend"], max_array=(rows, cols) if rows and cols else None,
                 local=local, **params)


def build_data(section: dict):
    """((x_train or EncodedImages, y_train), (x_test, y_test)) from a validated [data] table."""
    import numpy as np

    from .data import EncodedImages, digits_images, rate_encode, rows_encode

    if section.get("path"):
        from .data import load_npz
        return load_npz(section["path"])
    (img_train, y_train), (img_test, y_test) = digits_images()
    T, seed = section["T"], section["seed"]
    if section["encoding"] == "rows":
        return (rows_encode(img_train, T), y_train), (rows_encode(img_test, T), y_test)
    x_test = rate_encode(img_test, T, np.random.default_rng(np.random.SeedSequence([seed, 99])))
    if section["resample"]:
        train = EncodedImages(img_train, T=T, seed=seed)
    else:
        train = rate_encode(img_train, T, np.random.default_rng(seed))
    return (train, y_train), (x_test, y_test)


def build_network(config: dict, n_in: int, n_out: int = 10, crossbar=None):
    """An SRNN from a validated configuration."""
    from .network import SRNN

    net = config["network"]
    n_adaptive = net["n_adaptive"] if net["neuron"] == "alif" else None
    return SRNN(n_in, net["n_rec"], n_out, neuron=net["neuron"], n_adaptive=n_adaptive,
                tau_out=net["tau_out"], n_delay=net["n_delay"], seed=net["seed"],
                crossbar=crossbar if crossbar is not None else build_crossbar(config["crossbar"]),
                **net["neuron_params"])
