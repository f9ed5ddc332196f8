"The `muomni` command: errors a user can make come back as one line and exit status 2."
import json

def test_help_lists_the_books_commands(cli):
    r = cli("--help")
    assert r.returncode == 0
    for cmd in ("train-text", "train-audio-enc", "train-vision", "train-talker", "sft-omni", "pipeline", "chat",
                "update-configs", "bench"):
        assert cmd in r.stdout

def test_missing_config_file(cli):
    r = cli("train-text", "--config", "configs/nope_tiny.json")
    assert r.returncode == 2 and "config file not found" in r.stderr and "nope_tiny.json" in r.stderr
    assert "Traceback" not in r.stderr

def test_unknown_key_in_config(cli, tmp_path):
    f = tmp_path / "c.json"; f.write_text(json.dumps({"kind": "demo", "n_layrs": 2}))
    r = cli("train-text", "--config", f)
    assert r.returncode == 2 and "n_layrs" in r.stderr and "c.json" in r.stderr

def test_unknown_preset(cli, tmp_path):
    f = tmp_path / "c.json"; f.write_text(json.dumps({"kind": "demo"}))
    r = cli("train-vision", "--config", f, "--preset", "huge")
    assert r.returncode == 2 and "unknown preset 'huge'" in r.stderr

def test_bad_set_override(cli, tmp_path):
    f = tmp_path / "c.json"; f.write_text(json.dumps({"kind": "demo"}))
    r = cli("train-text", "--config", f, "--set", "lr")
    assert r.returncode == 2 and "key=value" in r.stderr

def test_pipeline_rejects_unknown_stage(cli):
    r = cli("pipeline", "--preset", "smoke", "--stages", "Z")
    assert r.returncode == 2 and "unknown stage" in r.stderr
