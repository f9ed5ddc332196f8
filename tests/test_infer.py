"Chapter 32 (muomni.infer): chat sessions, `muomni chat`, export to safetensors and back, the chat panel, bad input."
import argparse, datetime, io, json, shutil

import pytest
import torch

from muomni import data as D, infer as I, omni as E
from muomni.core import CheckpointError, save_checkpoint

PIC = D.render_shapes(D.ShapeSpec("star", "red", 1, "left", "large", "noise"), 64, 0)
NOW = datetime.datetime.now(datetime.timezone.utc)
QUESTIONS = ["what colour is the star?", "where is the red star?", "how many blue circles are there?"]


@pytest.fixture(scope="module")
def omni():
    return I.demo_omni(seed=3)


@pytest.fixture(scope="module")
def speech():
    return D.synthesize("what colour is the star?")[0]


def save_stage_e(omni, folder):
    "A Stage E save folder as sft_omni leaves it: final.pt, components.json, tokenizer.json and a talker/ copy."
    from muomni.talker import save_talker_extras
    save_checkpoint(folder / "final.pt", omni, omni.cfg)
    talker = None
    if omni.talker is not None:
        t = omni.talker
        save_checkpoint(folder / "talker" / "final.pt", t, t.cfg)
        save_talker_extras(folder / "talker", t)
        save_checkpoint(folder / "talker" / "codec" / "final.pt", t.codec, t.codec.cfg)
        talker = "talker"
    E.save_components(omni, folder, talker)
    return folder


def chat_args(ckpt, **kw):
    base = dict(ckpt=str(ckpt), text=None, image=None, audio=None, speak=None, interactive=False, temperature=0.0,
                top_k=0, top_p=1.0, max_new_tokens=6, seed=None, device="cpu")
    return argparse.Namespace(**{**base, **kw})


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- export and load ------------------------------------------------------------------------------------------------

def test_export_round_trip_same_logits_and_answers(omni, speech, tmp_path):
    out = I.export_model(omni, tmp_path / "exp")
    assert sorted(p.name for p in out.iterdir()) == ["char_lm.json", "config.json", "model.safetensors", "tokenizer.json"]
    conf = json.loads((out / "config.json").read_text())
    assert conf["format"] == I.EXPORT_FORMAT and conf["talker"]["phones"] == omni.talker.phones and conf["char_lm"] == "char_lm.json"
    back = I.load_exported(out, device="cpu")
    assert back.char_lm.counts == omni.char_lm.counts and back.char_lm.order == omni.char_lm.order
    assert I.is_export(out) and back.talker is not None and back.talker_path is None
    assert same_weights(back, omni) and same_weights(back.talker, omni.talker) and same_weights(back.talker.codec, omni.talker.codec)
    batch = omni.prompt_batch([dict(text=QUESTIONS[0], image=PIC, answer="red"), dict(text=QUESTIONS[1], audio=speech)])
    with torch.no_grad(): assert torch.equal(back(**batch), omni(**batch))
    for q in QUESTIONS:
        assert back.chat(q, image=PIC, max_new_tokens=8) == omni.chat(q, image=PIC, max_new_tokens=8)
    assert back.chat(audio=speech, max_new_tokens=8) == omni.chat(audio=speech, max_new_tokens=8)
    assert back.transcribe(speech, max_new_tokens=8) == omni.transcribe(speech, max_new_tokens=8)
    assert back.classify(PIC) == omni.classify(PIC)
    assert back.chat("t", temperature=1.0, top_k=20, seed=5, max_new_tokens=8) == omni.chat("t", temperature=1.0, top_k=20, seed=5, max_new_tokens=8)
    assert torch.equal(back.speak("red")[0], omni.speak("red")[0])


def test_export_carries_the_vocoder_and_the_voices(omni, tmp_path):
    "A Talker with a vocoder exports it too; the loaded model says the same waves, in each voice."
    from muomni import talker as T
    torch.manual_seed(0)
    vocoder = T.Vocoder(T.VocoderConfig(kind="vocoder", channels=16, blocks=1)).eval()
    T.attach_vocoder(omni.talker, vocoder)
    try:
        back = I.load_exported(I.export_model(omni, tmp_path / "exp"), device="cpu")
        assert back.talker.vocoder is not None and same_weights(back.talker.vocoder, vocoder)
        for voice in (None, "en-us+f3"):
            torch.testing.assert_close(back.speak("a red star", voice=voice)[0], omni.speak("a red star", voice=voice)[0])
        with pytest.raises(ValueError, match="this Talker speaks"): back.speak("a red star", voice="en-xx")
        assert back.talker.vocoder.cfg.phase_origin == "centre"
        out = tmp_path / "exp"                          # an export written before the vocoder had a phase origin
        conf = json.loads((out / "config.json").read_text())
        del conf["talker"]["vocoder"]["phase_origin"]
        (out / "config.json").write_text(json.dumps(conf))
        assert I.load_exported(out, device="cpu").talker.vocoder.cfg.phase_origin == "start"
    finally: T.attach_vocoder(omni.talker, None)


def test_export_without_or_with_a_broken_char_lm(omni, tmp_path):
    out = I.export_model(omni, tmp_path / "exp")
    (out / "char_lm.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="char_lm.json: not a character LM"): I.load_exported(out)
    (out / "char_lm.json").unlink()
    with pytest.raises(FileNotFoundError, match="char_lm.json"): I.load_exported(out)
    lm, omni.char_lm = omni.char_lm, None
    try:
        plain = I.export_model(omni, tmp_path / "plain")
        assert not (plain / "char_lm.json").exists() and I.load_exported(plain).char_lm is None
    finally: omni.char_lm = lm


def test_export_from_a_stage_e_folder_takes_the_talker_along(omni, tmp_path):
    folder = save_stage_e(omni, tmp_path / "omni_smoke")
    out = I.export_model(folder, tmp_path / "exp")
    back = I.load_model(out, device="cpu")
    assert back.talker is not None and same_weights(back, omni) and same_weights(back.talker, omni.talker)
    assert back.chat(QUESTIONS[0], image=PIC, max_new_tokens=8) == omni.chat(QUESTIONS[0], image=PIC, max_new_tokens=8)
    assert torch.equal(back.speak("red")[0], omni.speak("red")[0])
    shutil.rmtree(folder)                                                      # the export stands alone
    assert I.load_exported(out, device="cpu").chat(QUESTIONS[1], max_new_tokens=5) == omni.chat(QUESTIONS[1], max_new_tokens=5)


def test_tied_embeddings_are_stored_once(tmp_path):
    omni = I.demo_omni(talker=False, tie_embeddings=True)
    tensors, tied = I.export_tensors(omni)
    assert tied == {"omni.thinker.lm_head.weight": "omni.thinker.embed_tokens.weight"} and "omni.thinker.lm_head.weight" not in tensors
    back = I.load_exported(I.export_model(omni, tmp_path / "exp"), device="cpu")
    assert back.thinker.lm_head.weight is back.thinker.embed_tokens.weight and back.talker is None
    assert same_weights(back, omni) and back.chat("hi", max_new_tokens=6) == omni.chat("hi", max_new_tokens=6)


def test_export_replaces_an_export_but_not_other_folders(omni, tmp_path):
    out = I.export_model(omni, tmp_path / "exp")
    (out / "stale.txt").write_text("left over")
    I.export_model(omni, out)
    assert not (out / "stale.txt").exists() and I.is_export(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]          # no temporary folders left
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a muomni export"): I.export_model(omni, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match="afile"): I.export_model(omni, tmp_path / "afile")


@pytest.fixture
def exported(omni, tmp_path):
    return I.export_model(omni, tmp_path / "exp")


def test_damaged_weights_are_refused(exported):
    data = bytearray((exported / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (exported / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors is damaged.*sha256"): I.load_exported(exported)


def test_unreadable_safetensors_names_the_file(exported):
    conf = json.loads((exported / "config.json").read_text())
    del conf["sha256"]                                                          # skip the checksum: the parser must object
    (exported / "config.json").write_text(json.dumps(conf))
    (exported / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"): I.load_exported(exported)


@pytest.mark.parametrize("key", ["thinker", "omni", "weights", "format"])
def test_missing_config_key_is_named(exported, key):
    conf = json.loads((exported / "config.json").read_text())
    del conf[key]
    (exported / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match=f"config.json: missing key '{key}'"): I.load_exported(exported)


def test_other_bad_exports(exported, tmp_path):
    conf = json.loads((exported / "config.json").read_text())
    (exported / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"): I.load_exported(exported)
    (exported / "config.json").write_text(json.dumps(dict(conf, format_version=99)))
    with pytest.raises(CheckpointError, match="format_version 99"): I.load_exported(exported)
    (exported / "config.json").write_text(json.dumps(dict(conf, thinker=dict(conf["thinker"], d_model=64, n_heads=2))))
    with pytest.raises(CheckpointError, match="does not fit.*omni.thinker"): I.load_exported(exported)
    (exported / "config.json").write_text(json.dumps(dict(conf, thinker=dict(conf["thinker"], n_layrs=3))))
    with pytest.raises(CheckpointError, match="n_layrs"): I.load_exported(exported)
    (exported / "config.json").write_text(json.dumps(conf))
    (exported / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer"): I.load_exported(exported)
    with pytest.raises(FileNotFoundError, match="not found"): I.load_exported(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"): I.load_exported(tmp_path / "empty")


# --- chat ---------------------------------------------------------------------------------------------------------------

def test_session_keeps_history_like_omni_chat(omni, speech):
    s = I.ChatSession(omni, max_new_tokens=6)
    s.attach_image(PIC)
    a1 = s.ask(QUESTIONS[0])
    a2 = s.ask(audio=speech)
    a3 = s.ask(QUESTIONS[2])
    h = [dict(text=QUESTIONS[0], image=PIC, answer=a1), dict(text=None, audio=speech, answer=a2)]
    assert a1 == omni.chat(QUESTIONS[0], image=PIC, max_new_tokens=6)
    assert a2 == omni.chat(audio=speech, history=h[:1], max_new_tokens=6)
    assert a3 == omni.chat(QUESTIONS[2], history=h, max_new_tokens=6)
    assert s.image is None and len(s.history) == 3
    short = I.ChatSession(omni, max_turns=1, max_new_tokens=6)
    short.history = list(s.history)
    assert short.ask("and now?") == omni.chat("and now?", history=s.history[-1:], max_new_tokens=6)


def test_sampling_flags_are_checked(omni):
    for bad, word in [(dict(temperature=-0.5), "temperature"), (dict(top_k=-1), "top_k"), (dict(top_p=1.5), "top_p"),
                      (dict(max_new_tokens=0), "max_new_tokens")]:
        with pytest.raises(ValueError, match=word): I.ChatSession(omni, **bad)


def test_chat_main_one_shot_and_speak(omni, exported, tmp_path, capsys):
    PIC.save(tmp_path / "pic.png")
    answer = I.chat_main(chat_args(exported, text=QUESTIONS[0], image=tmp_path / "pic.png", speak=tmp_path / "a.wav"))
    assert capsys.readouterr().out == answer + "\n"
    assert answer == omni.chat(QUESTIONS[0], image=PIC, max_new_tokens=6)
    assert answer.strip(), "the demo model must say something, or nothing below is checked"
    assert len(D.load_audio(tmp_path / "a.wav")) == len(omni.speak(answer)[0])      # the answer, spoken


def test_chat_main_interactive(omni, speech, exported, tmp_path, monkeypatch, capsys):
    PIC.save(tmp_path / "pic.png")
    D.save_audio(tmp_path / "q.wav", speech)
    lines = [f"/image {tmp_path / 'pic.png'}", QUESTIONS[0], "/image nope.png", "", f"/audio {tmp_path / 'q.wav'}",
             "answer the question", "/reset", QUESTIONS[1], "/dance", "/quit", "never read"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    answers = I.chat_main(chat_args(exported, interactive=True))
    out = capsys.readouterr()
    wave = D.load_audio(tmp_path / "q.wav")
    a1 = omni.chat(QUESTIONS[0], image=PIC, max_new_tokens=6)
    a2 = omni.chat("answer the question", audio=wave, history=[dict(text=QUESTIONS[0], image=PIC, answer=a1)], max_new_tokens=6)
    assert answers == [a1, a2, omni.chat(QUESTIONS[1], max_new_tokens=6)]
    assert out.out == "".join(a + "\n" for a in answers)
    assert "nope.png" in out.err and "unknown command /dance" in out.err


def test_chat_main_text_then_interactive_until_eof(omni, exported, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(QUESTIONS[1] + "\n"))
    answers = I.chat_main(chat_args(exported, text=QUESTIONS[0], interactive=True))
    a1 = omni.chat(QUESTIONS[0], max_new_tokens=6)
    assert answers == [a1, omni.chat(QUESTIONS[1], history=[dict(text=QUESTIONS[0], answer=a1)], max_new_tokens=6)]


def test_chat_main_bad_input(exported, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "notes.wav").write_text("not a sound")
    # attachments are read before the model is loaded: the message names the file, not the (missing) model
    with pytest.raises(ValueError, match="notes.png"): I.chat_main(chat_args(tmp_path / "none", text="hi", image=tmp_path / "notes.png"))
    with pytest.raises(ValueError, match="notes.wav"): I.chat_main(chat_args(tmp_path / "none", text="hi", audio=tmp_path / "notes.wav"))
    with pytest.raises(FileNotFoundError, match="gone.png"): I.chat_main(chat_args(exported, image=tmp_path / "gone.png"))
    with pytest.raises(FileNotFoundError, match="not found"): I.chat_main(chat_args(tmp_path / "none", text="hi"))
    with pytest.raises(ValueError, match="--speak"): I.chat_main(chat_args(exported, text="hi", speak=tmp_path / "a.mp3"))
    with pytest.raises(ValueError, match="top_p"): I.chat_main(chat_args(exported, text="hi", top_p=0.0))
    silent = I.export_model(I.demo_omni(talker=False), tmp_path / "silent")
    with pytest.raises(ValueError, match="Talker"): I.chat_main(chat_args(silent, text="hi", speak=tmp_path / "a.wav"))


def test_stage_e_folder_chats_too(omni, tmp_path, capsys):
    folder = save_stage_e(omni, tmp_path / "omni_smoke")
    assert I.chat_main(chat_args(folder, text=QUESTIONS[0])) == omni.chat(QUESTIONS[0], max_new_tokens=6)


# --- the notebook panel -------------------------------------------------------------------------------------------------

def test_chat_panel_headless(omni):
    import ipywidgets as W
    panel = I.chat_panel(omni, max_new_tokens=5)
    title, pic_row, wav_row, ask_row, log, player = panel.children
    assert isinstance(log, W.Output) and isinstance(player, W.Audio) and isinstance(pic_row.children[0], W.FileUpload)
    text, send, speak, reset = ask_row.children
    buf = io.BytesIO(); PIC.save(buf, format="PNG")
    pic_row.children[0].value = ({"name": "mine.png", "type": "image/png", "size": len(buf.getvalue()),
                                  "content": memoryview(buf.getvalue()), "last_modified": NOW},)
    text.value = QUESTIONS[0]
    send.click()
    assert log.outputs[-1]["data"]["text/plain"] == "μOmni: " + omni.chat(QUESTIONS[0], image=PIC, max_new_tokens=5)
    assert pic_row.children[0].value == () and text.value == ""
    assert panel.session.history[-1]["answer"].strip(), "the demo model must say something, or speech is not checked"
    assert speak.value and bytes(player.value[:4]) == b"RIFF"
    pic_row.children[0].value = ({"name": "bad.png", "type": "image/png", "size": 3, "content": memoryview(b"abc"),
                                  "last_modified": NOW},)
    text.value = "what?"
    send.click()
    assert "error" in log.outputs[-1]["data"]["text/plain"] and len(panel.session.history) == 1
    reset.click()
    assert log.outputs == () and panel.session.history == []


# --- the default model --------------------------------------------------------------------------------------------------

def test_chat_and_export_default_to_the_newest_model(omni, tmp_path, monkeypatch, capsys):
    import os
    monkeypatch.setenv("MUOMNI_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"no trained Omni in {tmp_path / 'checkpoints'}"): I.latest_omni()
    older = save_stage_e(omni, tmp_path / "checkpoints" / "omni_laptop")
    newer = I.export_model(I.demo_omni(seed=9, talker=False), tmp_path / "checkpoints" / "omni_smoke")
    (tmp_path / "checkpoints" / "omni_empty").mkdir()                                 # no model in it: never chosen
    os.utime(older / "final.pt", ns=(1, 2 * 10**18)); os.utime(newer / I.WEIGHTS, ns=(1, 10**18))
    assert I.latest_omni() == older
    capsys.readouterr()
    args = chat_args(None, text=QUESTIONS[0]); args.ckpt = None                       # no --ckpt
    assert I.chat_main(args) == omni.chat(QUESTIONS[0], max_new_tokens=6)
    assert f"model: {older}" in capsys.readouterr().err                                # and it says which
    os.utime(newer / I.WEIGHTS, ns=(1, 3 * 10**18))
    assert I.latest_omni() == newer
    out = I.export_model(None, tmp_path / "exp")
    assert f"model: {newer}" in capsys.readouterr().err and same_weights(I.load_exported(out), I.load_exported(newer))


def test_wav_bytes_scales_a_loud_wave_down_instead_of_clipping():
    import numpy as np, soundfile as sf
    w = torch.sin(torch.linspace(0, 60, 1600)) * 1.5
    back, sr = sf.read(io.BytesIO(I.wav_bytes(w, 16000)), dtype="float32")
    assert sr == 16000 and abs(np.abs(back).max() - 1) < 1e-3
    np.testing.assert_allclose(back, (w / 1.5).numpy(), atol=1e-3)        # the same shape, not flattened peaks
    quiet, _ = sf.read(io.BytesIO(I.wav_bytes(w / 3, 16000)), dtype="float32")
    np.testing.assert_allclose(quiet, (w / 3).numpy(), atol=1e-3)         # never scaled up
