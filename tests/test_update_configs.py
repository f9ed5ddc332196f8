"`muomni update-configs`: step settings from the data size, presets untouched, --dry-run writes nothing."
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import link_corpora
from muomni import data as D
from muomni.core import TrainConfig, load_config, register_config
from muomni.pipeline import schedule_for, update_configs

ROOT = Path(__file__).resolve().parents[1]

@register_config("toy")
@dataclass
class ToyConfig(TrainConfig):
    corpus: str = ""

def count_samples(cfg): return 1000      # found through the config class's module, like a stage module's

def test_update_configs(tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text("x"); (tmp_path / "corpus.production.txt").write_text("xx")
    f = tmp_path / "toy_tiny.json"
    original = dict(kind="toy", batch_size=8, max_steps=5, corpus=str(tmp_path / "corpus.txt"), presets={"smoke": {"max_steps": 2}})
    f.write_text(json.dumps(original))
    changes = update_configs(tmp_path, dry_run=True)
    assert json.loads(f.read_text()) == original and "dry run" in capsys.readouterr().out
    assert changes["toy_tiny.json"]["samples"] == 1000
    update_configs(tmp_path)
    new = json.loads(f.read_text())
    assert (new["max_steps"], new["max_epochs"], new["val_freq"]) == (750, 6, 37)
    assert new["presets"] == original["presets"]
    assert new["corpus"].endswith("corpus.production.txt")
    assert update_configs(tmp_path)["toy_tiny.json"]["changes"] == {}      # idempotent


def test_scaled_configs_are_updated_too(tmp_path):
    for scale in ("tiny", "medium", "large", "xl", "huge"):
        (tmp_path / f"toy_{scale}.json").write_text(json.dumps(dict(kind="toy", batch_size=10)))
    assert sorted(update_configs(tmp_path, dry_run=True)) == ["toy_large.json", "toy_medium.json", "toy_tiny.json", "toy_xl.json"]


# --- the real stages on smoke-sized data -----------------------------------------------------------------------

STAGES = ("thinker_tiny", "audio_enc_tiny", "talker_tiny")

def smoke_copy(name: str, data_dir: Path) -> dict:
    "The project's config `name` with its smoke preset's values written in, reading data from `data_dir`."
    raw = json.loads((ROOT / "configs" / f"{name}.json").read_text(encoding="utf-8"))
    raw.update({k: v for k, v in raw["presets"]["smoke"].items() if k != "save_dir"}, preset="smoke", data_dir=str(data_dir))
    return raw

@pytest.fixture(scope="module")
def smoke_setup(tmp_path_factory):
    """Copies of the Stage A, B and D configs at smoke size, and their data: the unpacked text corpora (linked,
    not downloaded again), Stage A's tokenizer and token stream, and Stage B's smoke speech set."""
    root = tmp_path_factory.mktemp("update")
    data_dir, cfg_dir = root / "data", root / "configs"
    cfg_dir.mkdir(); link_corpora(data_dir)
    for name in STAGES: (cfg_dir / f"{name}.json").write_text(json.dumps(smoke_copy(name, data_dir), indent=2))
    from muomni.thinker import PackedText, prepare_text
    thinker = load_config(cfg_dir / "thinker_tiny.json")
    windows = len(PackedText(prepare_text(thinker)[1], thinker.ctx_len))
    utterances = len(D.read_manifest(D.speech_splits("smoke", data_dir=data_dir, progress=False)["train"]))
    return cfg_dir, dict(thinker_tiny=windows, audio_enc_tiny=utterances, talker_tiny=load_config(cfg_dir / "talker_tiny.json").n_train)

def test_count_samples_of_the_stages(smoke_setup):
    cfg_dir, expected = smoke_setup
    from muomni import audio, talker, thinker
    for name, module in zip(STAGES, (thinker, audio, talker)):
        assert module.count_samples(load_config(cfg_dir / f"{name}.json")) == expected[name], name
    assert expected["audio_enc_tiny"] == D.SPEECH_PRESETS["smoke"]["n_train"]

def test_update_configs_dry_run_cli(smoke_setup, cli):
    cfg_dir, expected = smoke_setup
    before = {f.name: f.read_bytes() for f in cfg_dir.glob("*.json")}
    r = cli("update-configs", "--dry-run", "--configs", cfg_dir)
    assert r.returncode == 0, r.stderr
    assert {f.name: f.read_bytes() for f in cfg_dir.glob("*.json")} == before and "dry run: nothing written" in r.stdout
    for name in STAGES:
        raw = json.loads(before[f"{name}.json"])
        cfg = load_config(cfg_dir / f"{name}.json")
        n = expected[name]
        want = schedule_for(n, cfg.batch_size, cfg.gradient_accumulation_steps)
        assert f"{name}.json: {n:,} training samples per epoch" in r.stdout, r.stdout
        diff = r.stdout.split(f"--- a/{name}.json")[1].split("--- a/")[0]
        assert f'-  "max_steps": {raw["max_steps"]},' in diff and f'+  "max_steps": {want["max_steps"]},' in diff, diff
        assert f'+  "max_epochs": {want["max_epochs"]}' in diff, diff
    # Stage A by hand: smoke windows of 65 tokens, a batch of 8, the book's rule for a small set
    n = expected["thinker_tiny"]
    assert 1_000 <= n < 10_000 and f'+  "max_steps": {-(-n // 8) * 6},' in r.stdout

def test_update_configs_without_data_leaves_the_config(tmp_path, capsys):
    (tmp_path / "thinker_tiny.json").write_text(json.dumps(smoke_copy("thinker_tiny", tmp_path / "no_data")))
    changes = update_configs(tmp_path, dry_run=True)
    out = capsys.readouterr().out
    assert changes["thinker_tiny.json"]["samples"] is None and changes["thinker_tiny.json"]["changes"] == {}
    assert "thinker_tiny.json: cannot count its samples yet" in out and "shakespeare" in out
