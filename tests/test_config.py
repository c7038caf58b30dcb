"""Tests of lrprop/config.py and lrprop/names.py.

Oracles: METHOD.md's numbers (§2-4) typed in here, deep-merge semantics (one key changes, every
other stays at its default), errors that name the dotted key, and round trips.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from lrprop.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
)
from lrprop.names import check_name

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- defaults


def test_defaults_are_method_values():
    c = Config()
    # §3 losses
    assert c.loss.tau == 0.1
    assert c.loss.sigma2 == 10.0
    assert c.loss.gamma == 0.1
    assert set(c.loss.terms) == {"same", "prop", "sdtw"}
    assert c.loss.cost == "sqeuclidean"
    assert c.loss.prop_positions == "view"
    assert c.loss.sdtw_normalize is False and c.loss.sdtw_divergence is False
    # §4 optimisation
    assert c.optim.lr == 1e-4
    assert c.optim.weight_decay == 1e-5
    assert c.optim.epochs == 300
    assert c.optim.grad_clip == 10.0
    # §2 model
    assert c.model.backbone == "resnet50"
    assert c.model.train_from == "layer4"
    assert c.model.pretrained is None  # nothing downloaded unless the user gives weights
    assert c.model.num_layers == 7
    assert c.model.model_dim == 256
    assert c.model.num_heads == 8
    assert c.model.ffn_dim == 1024
    assert c.model.embedding_dim == 128
    assert c.model.projection_dim == 128
    assert c.model.hidden_dim == 512
    assert c.model.dropout == 0.1
    # §1 data
    assert c.data.sample_ratio == (1.0, 1.5)
    assert c.data.num_views == 2 and c.data.videos_per_step == 2
    assert c.data.augment is True


def test_config_is_frozen():
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.loss.alpha = 1.0  # type: ignore[misc]


def test_empty_or_missing_file_gives_defaults(tmp_path):
    assert load_config() == Config()
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# only a comment\n", "d.yaml")) == Config()


# ----------------------------------------------------------------------------- merging


def test_deep_merge_changes_only_the_given_key(tmp_path):
    c = load_config(write(tmp_path, "loss: {alpha: 0.01}\n"))
    assert c.loss.alpha == 0.01
    expected = dataclasses.replace(Config(), loss=dataclasses.replace(Config().loss, alpha=0.01))
    assert c == expected
    assert c.loss.beta == Config().loss.beta and c.optim == Config().optim


def test_merge_of_two_sections(tmp_path):
    c = load_config(write(tmp_path, "model:\n  num_layers: 2\n  backbone: small_cnn\noptim:\n  epochs: 20\n"))
    assert (c.model.num_layers, c.model.backbone, c.optim.epochs) == (2, "small_cnn", 20)
    assert c.model.model_dim == 256 and c.optim.lr == 1e-4


def test_unknown_key_names_the_dotted_key(tmp_path):
    with pytest.raises(ConfigError, match=r"loss\.alphaa"):
        load_config(write(tmp_path, "loss: {alphaa: 0.01}\n"))
    with pytest.raises(ConfigError, match="lossy"):
        load_config(write(tmp_path, "lossy: {alpha: 0.01}\n", "e.yaml"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("optim: {epochs: ten}\n", "optim.epochs"),
        ('optim: {epochs: "10"}\n', "optim.epochs"),
        ("optim: {epochs: 1.5}\n", "optim.epochs"),
        ("optim: {epochs: true}\n", "optim.epochs"),
        ("data: {augment: 3}\n", "data.augment"),
        ("loss: {alpha: fast}\n", "loss.alpha"),
        ("model: {backbone: vgg}\n", "model.backbone"),
        ("model: {train_from: layer5}\n", "model.train_from"),
        ("loss: {cost: cosine}\n", "loss.cost"),
        ("model: {pretrained: 3}\n", "model.pretrained"),
        ("data: {sample_ratio: [1.0, 1.2, 1.5]}\n", "data.sample_ratio"),
        ("data: {sample_ratio: 1.5}\n", "data.sample_ratio"),
        ("loss: {terms: [same, 3]}\n", "loss.terms"),
        ("loss: 0.5\n", "loss"),
        ("ray: {start_timeout_s: -1}\n", "ray.start_timeout_s"),
        ("ray: {start_timeout_s: soon}\n", "ray.start_timeout_s"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert key in str(info.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_coercions(tmp_path):
    c = load_config(write(tmp_path, "loss:\n  terms: [same, prop]\n  alpha: 1\ndata:\n  sample_ratio: [1, 2]\n"))
    assert c.loss.terms == ("same", "prop") and isinstance(c.loss.terms, tuple)
    assert c.data.sample_ratio == (1.0, 2.0) and isinstance(c.data.sample_ratio, tuple)
    assert all(isinstance(x, float) for x in c.data.sample_ratio)
    assert isinstance(c.loss.alpha, float) and c.loss.alpha == 1.0
    # Optional fields accept null and a value of their type.
    c = load_config(write(tmp_path, "optim: {max_steps: 5}\nmodel: {pretrained: w.safetensors}\n", "o.yaml"))
    assert c.optim.max_steps == 5 and c.model.pretrained == "w.safetensors"
    assert load_config(write(tmp_path, "optim: {max_steps: null}\n", "n.yaml")).optim.max_steps is None
    # A config is hashable and comparable: tuples, not lists.
    hash(c)


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, "loss:\n  beta: 0.4\n  alpha: 0.01\n")
    c = load_config(path, ["loss.beta=1.6"])
    assert c.loss.beta == 1.6 and c.loss.alpha == 0.01
    c = load_config(path, ["loss.beta=1.6", "loss.beta=3.2", "optim.epochs=7", "loss.terms=[same]"])
    assert c.loss.beta == 3.2 and c.optim.epochs == 7 and c.loss.terms == ("same",)


def test_override_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"loss\.alphaa"):
        load_config(None, ["loss.alphaa=1"])
    with pytest.raises(ConfigError, match=r"optim\.epochs"):
        load_config(write(tmp_path, ""), ["optim.epochs=ten"])
    with pytest.raises(ConfigError):
        parse_override("loss.alpha")


def test_parse_override_reads_yaml_values():
    assert parse_override("loss.alpha=0.01") == {"loss": {"alpha": 0.01}}
    assert parse_override("model.pretrained=s3://b/w=1.pt") == {"model": {"pretrained": "s3://b/w=1.pt"}}
    assert parse_override("data.augment=false") == {"data": {"augment": False}}


def test_invalid_yaml_and_non_mapping_raise(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "loss: {alpha: [\n"))
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "- a\n- b\n", "l.yaml"))


def test_dict_round_trip():
    c = config_from_dict(
        {
            "loss": {"alpha": 0.003, "terms": ["same", "sdtw"], "sdtw_divergence": True},
            "data": {"frames_per_view": 40, "sample_ratio": [1.0, 1.25]},
            "model": {"pretrained": "/w.pt", "backbone": "small_cnn"},
            "optim": {"max_steps": 100},
        }
    )
    d = config_to_dict(c)
    assert isinstance(d["loss"]["terms"], list)
    assert config_from_dict(d) == c
    assert config_from_dict(config_to_dict(Config())) == Config()


def test_config_from_dict_with_base():
    base = config_from_dict({"loss": {"alpha": 0.01}})
    c = config_from_dict({"loss": {"beta": 1.6}}, base=base)
    assert c.loss.alpha == 0.01 and c.loss.beta == 1.6


# ----------------------------------------------------------------------------- shipped configs


def test_configs_directory_is_not_empty():
    assert sorted(CONFIG_DIR.glob("*.yaml"))


def _restated(given: dict, reference: dict, where: str = "") -> list[str]:
    """The dotted keys of ``given`` whose value equals ``reference``'s (a leaf that changes nothing)."""
    out = []
    for key, value in given.items():
        dotted = f"{where}{key}"
        if isinstance(value, dict) and isinstance(reference.get(key), dict):
            out += _restated(value, reference[key], dotted + ".")
        elif key in reference and value == reference[key]:
            out.append(dotted)
    return out


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")) + sorted(CONFIG_DIR.glob("*.yml")), ids=lambda p: p.name)
def test_every_config_loads_starts_with_its_command_and_changes_every_key_it_names(path):
    """The one test of the shipped configs (loading, the command line, no dead keys).

    A key set to its default only restates it, and then goes on restating it after the
    default moves: a config names what it changes (what it keeps belongs in a comment).
    """
    config = load_config(path)
    assert isinstance(config, Config)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#")
    assert first.lstrip("#").strip().startswith("lrprop"), first
    assert path.name in first  # the command runs this very file
    raw = yaml.safe_load(path.read_text()) or {}
    per_class = raw.pop("actions", {}) or {}
    assert _restated(raw, config_to_dict(Config())) == [], f"{path.name} restates defaults"
    whole = config_to_dict(config)  # a class's entry is read over the file's own settings
    for action, changes in per_class.items():
        assert _restated(changes, whole) == [], f"{path.name}: actions.{action} restates the file's settings"


def test_restated_keys_are_found_at_any_depth_and_changed_ones_are_not():
    defaults = config_to_dict(Config())
    given = {
        "loss": {"alpha": defaults["loss"]["alpha"], "beta": 99.0},
        "eval": {"fractions": list(defaults["eval"]["fractions"])},
    }
    assert _restated(given, defaults) == ["loss.alpha", "eval.fractions"]


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["run-1.a_b", "a", "A9", "x" * 128, "v1.2.3"])
def test_check_name_accepts(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../x", "a/b", "a\\b", ".hidden", "a..b", "x" * 200, "x" * 129, "-flag", "a b", "é", "a\n", ".."],
)
def test_check_name_rejects(name):
    with pytest.raises(ValueError, match="run name"):
        check_name(name, "run name")


def test_check_name_rejects_non_strings():
    with pytest.raises(ValueError):
        check_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("loss.gamma=0", "loss.gamma"),
        ("loss.tau=-1", "loss.tau"),
        ("loss.terms=[same, bogus]", "loss.terms[1]"),
        ("loss.terms=[]", "loss.terms"),
        ("data.sample_ratio=[1.5, 1.0]", "data.sample_ratio"),
        ("data.frames_per_view=1", "data.frames_per_view"),
        ("optim.epochs=0", "optim.epochs"),
        ("optim.lr=0", "optim.lr"),
        ("model.num_heads=7", "model.num_heads"),  # 256 does not split into 7 heads
        ("model.num_layers=0", "model.num_layers"),
        ("model.dropout=1.0", "model.dropout"),
    ],
)
def test_out_of_range_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, [override])


def test_terms_that_act_on_no_pair_of_views_are_refused():
    with pytest.raises(ConfigError, match="data.num_views=1"):
        load_config(None, ["data.num_views=1", "loss.terms=[same]"])
    with pytest.raises(ConfigError, match="data.videos_per_step=1"):
        load_config(None, ["data.videos_per_step=1", "loss.terms=[prop, sdtw]"])
    assert load_config(None, ["data.videos_per_step=1", "loss.terms=[same, prop]"]).loss.terms == ("same", "prop")


# ----------------------------------------------------------------------------- {action} in model.pretrained


def test_action_in_model_pretrained_becomes_the_class_name():
    c = load_config(None, ["model.pretrained=s3://b/backbones/pennaction/{action}/v1/backbone.safetensors"])
    assert c.for_class("golf_swing").model.pretrained == "s3://b/backbones/pennaction/golf_swing/v1/backbone.safetensors"
    assert c.model.pretrained.count("{action}") == 1  # the shared config keeps the template
    # A class's own value (actions:) is substituted too; a value without it is left alone.
    per_class = config_from_dict(
        {"model": {"pretrained": "w/{action}.safetensors"}, "actions": {"squat": {"model": {"pretrained": "{action}/own"}}}}
    )
    assert per_class.for_class("squat").model.pretrained == "squat/own"
    assert per_class.for_class("bench_press").model.pretrained == "w/bench_press.safetensors"
    assert load_config(None, ["model.pretrained=w.safetensors"]).for_class("squat").model.pretrained == "w.safetensors"


@pytest.mark.parametrize("value", ["w/{class}/b.safetensors", "w/{Action}/b", "w/{}/b", "w/{action}/{version}"])
def test_any_other_placeholder_in_model_pretrained_is_refused_naming_the_key(value):
    flag = re.escape(f"--set model.pretrained={value}")
    with pytest.raises(ConfigError, match=rf"^{flag}: model\.pretrained: unknown placeholder"):
        load_config(None, [f"model.pretrained={value}"])
    with pytest.raises(ConfigError, match=r"model\.pretrained: unknown placeholder"):
        config_from_dict({"actions": {"squat": {"model": {"pretrained": value}}}})


def test_an_action_that_is_not_a_path_component_is_refused_in_the_template():
    c = load_config(None, ["model.pretrained=w/{action}/b"])
    with pytest.raises(ConfigError, match="model.pretrained: invalid action name"):
        c.for_class("../escape")


# (old YAML, the old and the new key, the value a --set gives, how to read it back, its value)
RENAMES = [
    ("dataset:\n  labels: /x\n", "dataset.labels", "dataset.labels_dir", "=/x", lambda c: c.dataset.labels_dir, "/x"),
    ("data:\n  num_frames: 20\n", "data.num_frames", "data.frames_per_view", "=20", lambda c: c.data.frames_per_view, 20),
    ("data:\n  num_workers: 3\n", "data.num_workers", "data.loader_workers", "=3", lambda c: c.data.loader_workers, 3),
    ("ingest:\n  workers: 3\n", "ingest.workers", "ingest.threads", "=3", lambda c: c.ingest.threads, 3),
    (
        "synthetic:\n  num_classes: 3\n",
        "synthetic.num_classes",
        "synthetic.num_actions",
        "=3",
        lambda c: c.synthetic.num_actions,
        3,
    ),
    ("classes:\n  squat: {}\n", "classes", "actions", "={squat: {}}", lambda c: c.actions, {"squat": {}}),
    (
        "actions:\n  squat: {data: {num_frames: 20}}\n",
        "actions.squat.data.num_frames",
        "actions.squat.data.frames_per_view",
        "=20",
        lambda c: c.for_class("squat").data.frames_per_view,
        20,
    ),
]


@pytest.mark.parametrize(("yaml_text", "old", "new", "set_value", "read", "value"), RENAMES, ids=[r[1] for r in RENAMES])
def test_a_renamed_key_fails_naming_its_new_name(tmp_path, yaml_text, old, new, set_value, read, value):
    """In a file and in a --set; the new key takes the value."""
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(old)}' is now '{re.escape(new)}'"):
        load_config(write(tmp_path, yaml_text))
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(old)}' is now '{re.escape(new)}'"):
        load_config(None, [old + set_value])
    assert read(load_config(None, [new + set_value])) == value


def test_a_config_stored_before_the_renames_is_read_back_under_the_new_names():
    """What lrprop itself wrote (a checkpoint's, an exported model's config) keeps loading."""
    from lrprop.config import upgrade_stored

    old = config_to_dict(Config())
    old["dataset"].pop("labels_dir")
    old["dataset"]["labels"] = "/data/phase_labels"
    old["data"].pop("frames_per_view")
    old["data"]["num_frames"] = 24
    old["data"].pop("loader_workers")
    old["data"]["num_workers"] = 3
    old["ingest"].pop("threads")
    old["ingest"]["workers"] = 5
    old["synthetic"].pop("num_actions")
    old["synthetic"]["num_classes"] = 4
    old.pop("actions")
    old["classes"] = {"squat": {"data": {"num_frames": 40}, "loss": {"beta": 1.6}}}
    frozen = json.loads(json.dumps(old))
    config = config_from_dict(upgrade_stored(old))
    assert (config.dataset.labels_dir, config.data.frames_per_view, config.data.loader_workers) == ("/data/phase_labels", 24, 3)
    assert (config.ingest.threads, config.synthetic.num_actions) == (5, 4)
    squat = config.for_class("squat")
    assert (squat.data.frames_per_view, squat.loss.beta) == (40, 1.6)
    assert old == frozen  # the argument is left as it was
    assert upgrade_stored(config_to_dict(Config())) == config_to_dict(Config())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.epochs=true", r"^optim\.epochs: input should be a valid integer, got True$"),
        ("optim.epochs=2.5", r"^optim\.epochs: input should be a valid integer, got 2\.5$"),
        ("optim.lr=fast", r"^optim\.lr: input should be a valid number, got 'fast'$"),
        ("optim.lr='0.1'", r"^optim\.lr: input should be a valid number, got '0\.1'$"),
        ("optim.bf16=1", r"^optim\.bf16: input should be a valid boolean, got 1$"),
        ("data.sample_ratio=[1.0]", r"^data\.sample_ratio\[1\]: field required"),
        ("loss.terms=[same, bogus]", r"^loss\.terms\[1\]: input should be 'same', 'prop' or 'sdtw', got 'bogus'$"),
        ("model.backbone=vit", r"^model\.backbone: input should be 'resnet50' or 'small_cnn', got 'vit'$"),
        ("dataset.source=3", r"^dataset\.source: input should be a valid string, got 3$"),
        ("actions={squat: 3}", r"^actions\[squat\]: input should be an object, got 3$"),
        ("dataset.source=2026-12-01", r"^dataset\.source: datetime\.date\(2026, 12, 1\) is not a plain value"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(override, message):
    """No silent conversion: a string is not a number, 1 is not true, 2.5 is not an integer. The
    message names the flag that gave the value."""
    with pytest.raises(ConfigError, match=f"^--set {re.escape(override)}: " + message.removeprefix("^")):
        load_config(None, [override])


def test_numbers_keep_their_types_and_exponents_without_a_dot_are_numbers(tmp_path):
    config = load_config(write(tmp_path, "optim:\n  lr: 1e-4\n  weight_decay: 0\n"), ["loss.alpha=3E-3", "optim.epochs=7"])
    assert (config.optim.lr, config.loss.alpha, config.optim.epochs) == (1e-4, 3e-3, 7)
    assert type(config.optim.weight_decay) is float and type(config.optim.epochs) is int
    assert load_config(None, ["data.sample_ratio=[1, 2]"]).data.sample_ratio == (1.0, 2.0)  # a list, ints: floats
    assert load_config(None, ["dataset.source=1e5x"]).dataset.source == "1e5x"  # not a number: a string


def test_an_error_names_the_flag_or_the_file_that_gave_the_bad_value(tmp_path):
    path = write(tmp_path, "optim:\n  epochs: 0\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: optim\.epochs: must be >= 1"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^--set optim\.lr=fast: optim\.lr: input should be a valid number"):
        load_config(path, ["optim.epochs=3", "optim.lr=fast"])  # the file's lr is fine: the flag is to blame
    with pytest.raises(ConfigError, match=r"^--set optim\.lr=-1: optim\.lr: must be > 0"):
        load_config(None, ["optim.lr=0.1", "optim.lr=-1"])  # the last --set of a key is the one used


def test_a_config_is_read_from_a_store_uri_as_from_a_file(tmp_path):
    """Issue 15: ``lrprop tune`` writes best.yaml to the store; ``--config`` must read it there."""
    import fsspec

    text = "# lrprop run --config best.yaml\nloss: {alpha: 0.02, beta: 0.9}\ndata: {frames_per_view: 70}\n"
    uri = f"memory://lrprop-config-test/{tmp_path.name}/best.yaml"
    with fsspec.open(uri, "w") as f:
        f.write(text)
    assert load_config(uri) == load_config(write(tmp_path, text)) != Config()
    assert load_config(uri).data.frames_per_view == 70
    with pytest.raises(FileNotFoundError, match="memory://lrprop-config-test/.*/missing.yaml"):
        load_config(uri.replace("best.yaml", "missing.yaml"))
    bad = uri.replace("best.yaml", "bad.yaml")
    with fsspec.open(bad, "w") as f:
        f.write("loss: {alpha: fast}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(bad)}: loss.alpha"):
        load_config(bad)


def test_a_promotion_metric_the_evaluation_does_not_compute_is_a_config_error_for_a_run(tmp_path):
    from lrprop.config import check_for_a_run

    # The stored metrics are keyed by str(K) and str(fraction): these are the keys the gate looks up.
    assert check_for_a_run(config_from_dict({"promotion": {"metric": "ap_at_k/5"}})).promotion.metric == "ap_at_k/5"
    assert check_for_a_run(config_from_dict({"promotion": {"metric": "phase_classification/0.1"}}))
    with pytest.raises(ConfigError, match=r"promotion\.metric: 'ap_at_k/3' is not computed.*eval\.ap_ks"):
        check_for_a_run(config_from_dict({"promotion": {"metric": "ap_at_k/3"}}))
    with pytest.raises(ConfigError, match=r"'phase_classification/0\.10' is not computed.*'0\.1'"):
        check_for_a_run(config_from_dict({"promotion": {"metric": "phase_classification/0.10"}}))
    assert check_for_a_run(config_from_dict({"promotion": {"metric": "ap_at_k/3"}, "eval": {"ap_ks": [3]}}))
    # A run's config file and overrides are checked; a stored config (a model's) still loads.
    with pytest.raises(ConfigError, match=r"--set promotion\.metric=ap_at_k/3: promotion\.metric"):
        load_config(None, ["promotion.metric=ap_at_k/3"])
    assert config_from_dict({"promotion": {"metric": "ap_at_k/3"}}).promotion.metric == "ap_at_k/3"


def test_a_pace_error_may_be_the_promotion_metric_while_the_evaluation_measures_it():
    from lrprop.config import check_for_a_run

    for kind in ("repaced", "trimmed"):
        assert check_for_a_run(config_from_dict({"promotion": {"metric": f"pace/{kind}"}})).promotion.metric == f"pace/{kind}"
    with pytest.raises(ConfigError, match=r"promotion\.metric: 'pace/repaced' is not computed: eval\.pace_videos is 0"):
        check_for_a_run(config_from_dict({"promotion": {"metric": "pace/repaced"}, "eval": {"pace_videos": 0}}))
    with pytest.raises(ConfigError, match=r"promotion\.metric: must be one of"):
        config_from_dict({"promotion": {"metric": "pace/sideways"}})
    with pytest.raises(ConfigError, match=r"eval\.pace_videos: must be >= 0, got -1"):
        config_from_dict({"eval": {"pace_videos": -1}})
    assert config_from_dict({}).eval.pace_videos == 8 and config_from_dict({}).eval.pace_seed == 0


def test_drop_positions_needs_positions_to_drop():
    with pytest.raises(ConfigError, match="model.drop_positions"):
        config_from_dict({"model": {"positions": "local", "drop_positions": 0.5}})
    assert config_from_dict({"model": {"positions": "local"}}).model.attention_window == 8
