"`muomni update-configs`: step settings from the data size, presets untouched, --dry-run writes nothing."
import json
from dataclasses import dataclass

from muomni.core import TrainConfig, register_config
from muomni.pipeline import update_configs

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
