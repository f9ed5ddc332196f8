"The `muomni` command: errors a user can make come back as one line and exit status 2."
import json, subprocess

from conftest import BIN

def test_help_lists_the_books_commands(cli):
    r = cli("--help")
    assert r.returncode == 0
    for cmd in ("train-text", "train-audio-enc", "train-vision", "train-talker", "sft-omni", "pipeline", "chat",
                "export", "update-configs", "bench"):
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


# --- chat and export (chapter 32) ---------------------------------------------------------------------------------------

def test_chat_missing_model_is_one_line(cli, tmp_path):
    r = cli("chat", "--ckpt", tmp_path / "no_model", "--text", "hi")
    assert r.returncode == 2 and "no_model" in r.stderr and "not found" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

def test_chat_unreadable_attachments_are_named(cli, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    r = cli("chat", "--ckpt", tmp_path / "no_model", "--text", "hi", "--image", tmp_path / "notes.png")
    assert r.returncode == 2 and "notes.png" in r.stderr and "Traceback" not in r.stderr
    r = cli("chat", "--ckpt", tmp_path / "no_model", "--audio", tmp_path / "missing.wav")
    assert r.returncode == 2 and "missing.wav" in r.stderr and "Traceback" not in r.stderr
    r = cli("chat", "--ckpt", tmp_path / "no_model", "--text", "hi", "--top_p", "0")
    assert r.returncode == 2 and "top_p" in r.stderr

def test_export_missing_model(cli, tmp_path):
    r = cli("export", "--ckpt", tmp_path / "no_model", "--out", tmp_path / "exp")
    assert r.returncode == 2 and "no_model" in r.stderr and not (tmp_path / "exp").exists()

def test_export_then_chat(cli, tmp_path):
    from muomni import infer as I
    from test_infer import save_stage_e, PIC, QUESTIONS
    omni = I.demo_omni(seed=4)
    folder = save_stage_e(omni, tmp_path / "omni_smoke")
    r = cli("export", "--ckpt", folder, "--out", tmp_path / "exp")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["files"] == ["char_lm.json", "config.json", "model.safetensors", "tokenizer.json"]
    r = cli("export", "--ckpt", tmp_path / "exp", "--out", folder)                 # would overwrite the Stage E folder
    assert r.returncode == 2 and "not a muomni export" in r.stderr and (folder / "final.pt").exists()
    PIC.save(tmp_path / "pic.png")
    r = cli("chat", "--ckpt", tmp_path / "exp", "--text", QUESTIONS[0], "--image", tmp_path / "pic.png",
            "--max_new_tokens", "6", "--speak", tmp_path / "said.wav", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    a1 = omni.chat(QUESTIONS[0], image=PIC, max_new_tokens=6)
    assert a1.strip(), "the demo model must say something, or speech is not checked"
    assert r.stdout == a1 + "\n" and (tmp_path / "said.wav").exists()
    said = ["chat", "--ckpt", tmp_path / "exp", "--text", QUESTIONS[0], "--max_new_tokens", "6", "--device", "cpu", "--speak"]
    r = cli(*said, tmp_path / "f3.wav", "--voice", "en-us+f3")                   # another of the Talker's voices
    assert r.returncode == 0 and (tmp_path / "f3.wav").exists(), r.stderr[-2000:]
    r = cli(*said, tmp_path / "xx.wav", "--voice", "en-xx")
    assert r.returncode == 2 and "this Talker speaks" in r.stderr and not (tmp_path / "xx.wav").exists()
    r = subprocess.run([str(BIN / "muomni"), "chat", "--ckpt", str(tmp_path / "exp"), "--max-new-tokens", "6", "--device", "cpu"],
                       input=f"/image {tmp_path / 'pic.png'}\n{QUESTIONS[0]}\n{QUESTIONS[1]}\n", capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a2 = omni.chat(QUESTIONS[1], history=[dict(text=QUESTIONS[0], image=PIC, answer=a1)], max_new_tokens=6)
    assert r.stdout == a1 + "\n" + a2 + "\n"
