"""Same answer batched or alone. For every model, an input run alone and the same input inside a batch padded to longer
inputs give the same outputs, over random lengths (fixed seeds). Padded positions are filled with noise, not zeros, so a
model that reads its padding anywhere fails.

Tolerance: float32 with atol = rtol = 1e-4. A batch of another shape runs the same arithmetic with other kernels and
another order of accumulation (matmul blocking, reductions over a longer padded axis), which changes the last bits of
float32 results (about 1e-7 relative per operation); a few layers keep that far below 1e-4. Reading one padded frame
moves outputs by 1e-2 or more. Discrete outputs (codes, answers, generated tokens) must be identical."""
import random

import pytest
import torch
from PIL import Image

from muomni.core import load_config
from muomni import audio as A, omni as E, talker as T, vision as V
from muomni.thinker import Thinker, generate, train_tokenizer

TOL = dict(atol=1e-4, rtol=1e-4)


def close(a, b, what):
    torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"{what}: batched and alone differ\n{m}")


# --- audio encoder (Stage B) ------------------------------------------------------------------------------------------

def noisy_pad(rows: list[torch.Tensor], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    "(B, T_max, ...) batch of `rows` whose padding is noise, and their lengths."
    g = torch.Generator().manual_seed(seed)
    T_max = max(len(r) for r in rows)
    out = torch.randn(len(rows), T_max, *rows[0].shape[1:], generator=g) * 3
    for i, r in enumerate(rows): out[i, :len(r)] = r
    return out, torch.tensor([len(r) for r in rows])


def test_audio_encoder_batched_equals_alone():
    cfg = load_config("audio_enc_tiny", preset="smoke")
    torch.manual_seed(0)
    model = A.AudioEncoder(cfg).eval()
    model.mel_mean.normal_(-5, 1); model.mel_std.uniform_(0.5, 2)
    rng = random.Random(1)
    for trial in range(4):
        lengths = [rng.randint(9, 260) for _ in range(5)]
        mels = [torch.randn(n, cfg.n_mels) * 2 - 5 for n in lengths]
        batch, n = noisy_pad(mels, trial)
        with torch.no_grad():
            logits, out_n = model(batch, n)
            tokens, tok_n = model.encode(batch, n)
            for i, mel in enumerate(mels):
                alone, alone_n = model(mel[None])
                assert int(out_n[i]) == int(alone_n[0])
                close(logits[i, :int(alone_n[0])], alone[0], f"CTC logits, {len(mel)} mel frames")
                alone_tok, alone_tok_n = model.encode(mel[None])
                assert int(tok_n[i]) == int(alone_tok_n[0])
                close(tokens[i, :int(alone_tok_n[0])], alone_tok[0], f"12.5 Hz tokens, {len(mel)} mel frames")


# --- vision encoder (Stage C) -----------------------------------------------------------------------------------------

def test_vision_batched_equals_alone():
    "Pictures have no padding, but any size is resized into one batch: each row must not depend on the others."
    cfg = load_config("vision_tiny", preset="smoke", shapes=["circle", "star"], colours=["red", "blue"])
    torch.manual_seed(0)
    model = V.VisionClassifier(cfg).eval()
    rng = random.Random(2)
    pics = [Image.fromarray(torch.randint(0, 256, (rng.randint(8, 90), rng.randint(8, 90), 3), dtype=torch.uint8).numpy())
            for _ in range(6)]
    x = V.normalize(V.images_to_tensor(pics, cfg.img_size))
    with torch.no_grad():
        cls, patches = model.encoder(x)
        for i in range(len(pics)):
            c1, p1 = model.encoder(x[i:i + 1])
            close(cls[i], c1[0], f"CLS token of picture {i}"); close(patches[i], p1[0], f"patch tokens of picture {i}")
    assert model.classify(pics) == [model.classify(p) for p in pics]


# --- Thinker (Stage A) ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("moe", [False, True])
def test_thinker_padded_batch_equals_alone(moe):
    cfg = load_config("thinker_tiny", preset="smoke", vocab_size=320, use_moe=moe)
    torch.manual_seed(0)
    model = Thinker(cfg).eval()
    rng = random.Random(3)
    rows = [torch.randint(0, 320, (rng.randint(1, 40),)) for _ in range(5)]
    L = max(len(r) for r in rows)
    place = lambda r, left: slice(L - len(r), L) if left else slice(0, len(r))
    def padded(left: bool):
        ids = torch.randint(0, 320, (len(rows), L))   # padding: random tokens, masked out
        mask = torch.zeros(len(rows), L, dtype=torch.long)
        for i, r in enumerate(rows): ids[i, place(r, left)], mask[i, place(r, left)] = r, 1
        return ids, mask
    for left in (True, False):                       # left: generation batches; right: training batches
        ids, mask = padded(left)
        with torch.no_grad():
            logits = model(ids, attention_mask=mask)
            for i, r in enumerate(rows):
                close(logits[i, place(r, left)], model(r[None])[0], f"{'left' if left else 'right'}-padded logits, {len(r)} tokens")
    ids, mask = padded(left=True)
    new = generate(model, ids, 12, temperature=0, attention_mask=mask)
    for i, r in enumerate(rows):
        assert torch.equal(new[i], generate(model, r[None], 12, temperature=0)[0]), f"generation, {len(r)}-token prompt"


# --- Talker and codec (Stage D) ---------------------------------------------------------------------------------------

def small_talker(seed: int = 0):
    cfg = load_config("talker_tiny", preset="smoke", d_model=48, n_heads=2, n_kv_heads=1, d_ff=96, n_layers=2, phone_dim=16)
    torch.manual_seed(seed)
    talker = T.Talker(cfg, [T.PAD, T.SIL, T.UNK] + [f"p{i}" for i in range(30)]).eval()
    for p in talker.parameters(): p.data.normal_(0, 0.3)       # away from the small init: padding leaks would show
    return cfg, talker


def talker_item(rng: random.Random, cfg) -> dict:
    n = rng.randint(2, 25)
    durs = torch.tensor([rng.randint(0, 14) for _ in range(n)])
    n_mel = max(int(durs.sum()), 1); n_mel += (-n_mel) % T.STACK
    return dict(phones=torch.randint(3, 33, (n,)), durs=durs, frame_phone=T.frame_index(durs, n_mel),
                codes=torch.randint(0, cfg.codebook_size, (n_mel // T.STACK, cfg.codebooks)))


def test_talker_batched_equals_alone():
    cfg, talker = small_talker()
    rng = random.Random(4)
    items = [talker_item(rng, cfg) for _ in range(6)]
    b = T.collate_talker(items)
    b["codes"] = torch.where(b["code_mask"][..., None], b["codes"], torch.randint_like(b["codes"], cfg.codebook_size))
    with torch.no_grad():
        logits, log_dur = talker(b["phones"], b["frame_phone"], b["codes"])
        for i, it in enumerate(items):
            lg1, ld1 = talker(it["phones"][None], it["frame_phone"][None], it["codes"][None])
            n, l = len(it["phones"]), len(it["codes"])
            close(log_dur[i, :n], ld1[0], f"log-durations, {n} phonemes")
            for k in range(cfg.codebooks): close(logits[k][i, :l], lg1[k][0], f"codebook {k} logits, {l} frames")
        conds = [talker.plan(it["phones"])[1][0] for it in items]
        L = max(len(c) for c in conds)
        codes = talker.generate(torch.stack([torch.nn.functional.pad(c, (0, 0, 0, L - len(c))) for c in conds]))
        for i, c in enumerate(conds):
            assert torch.equal(codes[i, :len(c)], talker.generate(c[None])[0]), f"generated codes of item {i}"


def small_codec(seed: int = 0):
    torch.manual_seed(seed)
    codec = T.RVQCodec(T.CodecConfig(hidden=32, latent_dim=8, codebook_size=16)).eval()
    codec.set_stats(torch.randn(128) - 5, torch.rand(128) + 0.5)
    return codec


def test_codec_batched_equals_alone():
    codec = small_codec()
    rng = random.Random(5)
    mels = [torch.randn(T.STACK * rng.randint(1, 30), 128) - 5 for _ in range(5)]
    batch, n = noisy_pad(mels, 6)
    with torch.no_grad():
        z = codec.latents(batch, n)
        codes = codec.encode(batch, n)
        n_codes = n // T.STACK
        rec = codec.decode(codes, n_codes)
        for i, mel in enumerate(mels):
            l = len(mel) // T.STACK
            close(z[i, :l], codec.latents(mel[None])[0], f"latents, {l} code frames")
            assert torch.equal(codes[i, :l], codec.encode(mel[None])[0]), f"codes, {l} code frames"
            close(rec[i, :len(mel)], codec.decode(codes[i:i + 1, :l])[0], f"decoded log-mel, {l} code frames")


def test_codec_whole_utterance_equals_its_crops_away_from_the_edges():
    """The codec trains on crops and encodes whole utterances: with per-frame norms, a code frame depends only on the
    `context()` frames around it, so a crop and the whole agree everywhere but near the crop's own edges."""
    codec = small_codec(1)
    enc_ctx, dec_ctx = codec.context()
    mel = torch.randn(T.STACK * 60, 128) - 5
    with torch.no_grad():
        z, codes = codec.latents(mel[None])[0], codec.encode(mel[None])[0]
        rec = codec.decode(codes[None])[0]
        for start, size in ((0, 20), (13, 32), (40, 20)):
            crop = mel[start * T.STACK:(start + size) * T.STACK]
            inner = slice(enc_ctx if start else 0, size - enc_ctx if start + size < 60 else size)
            close(codec.latents(crop[None])[0][inner], z[start:start + size][inner], "latents of a crop")
            crop_rec = codec.decode(codes[None, start:start + size])[0]
            lo, hi = start * T.STACK, (start + size) * T.STACK
            inner_mel = slice(dec_ctx if start else 0, hi - lo - dec_ctx if start + size < 60 else hi - lo)
            close(crop_rec[inner_mel], rec[lo:hi][inner_mel], "decoded log-mel of a crop")
    # and the context is no wider than claimed: a frame just outside it changes nothing, one inside it does
    with torch.no_grad():
        moved = mel.clone(); moved[(30 + enc_ctx + 1) * T.STACK:(30 + enc_ctx + 2) * T.STACK] += 5
        assert torch.equal(codec.latents(moved[None])[0][30], z[30])
        moved = mel.clone(); moved[(30 + enc_ctx) * T.STACK] += 5
        assert not torch.equal(codec.latents(moved[None])[0][30], z[30])


# --- Omni (Stage E): chat alone and answer_batch with left padding ----------------------------------------------------

WORDS = "what colour shape is the star circle red blue where how many describe picture left right object".split()


@pytest.fixture(scope="module")
def omni():
    tok = train_tokenizer([" ".join(WORDS) * 30 + " the red star is on the left."], 300)
    torch.manual_seed(0)
    thinker = Thinker(load_config("thinker_tiny", preset="smoke", vocab_size=tok.vocab_size)).eval()
    vision = V.VisionClassifier(load_config("vision_tiny", preset="smoke", shapes=["circle", "star"], colours=["red", "blue"])).eval()
    audio = A.AudioEncoder(load_config("audio_enc_tiny", preset="smoke")).eval()
    cfg = load_config("omni_sft_tiny", preset="smoke", device="cpu")      # ctc_segments audio tokens, aligned positions
    return E.Omni(cfg, thinker, tok, vision, audio).eval()


def test_omni_chat_alone_equals_left_padded_batch(omni):
    rng = random.Random(7)
    g = torch.Generator().manual_seed(7)
    questions = []
    for i in range(6):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) + "?"
        image = Image.new("RGB", (rng.randint(20, 80), rng.randint(20, 80)), tuple(rng.randrange(256) for _ in range(3))) if i % 2 else None
        audio = 0.1 * torch.randn(rng.randint(2000, 40000), generator=g) if i % 3 == 0 else None
        questions.append(dict(text=text, image=image, audio=audio))
    images = [q["image"] for q in questions if q["image"] is not None]
    waves = [q["audio"] for q in questions if q["audio"] is not None]
    image_bank = omni.image_features(omni.pixels(images))
    audio_bank = omni.audio_features(waves)                        # the audio encoder runs on a padded batch too
    items, k_img, k_aud = [], 0, 0
    for q in questions:
        img, aud = (k_img if q["image"] is not None else -1), (k_aud if q["audio"] is not None else -1)
        k_img, k_aud = k_img + (img >= 0), k_aud + (aud >= 0)
        n_audio = len(audio_bank[aud]) if aud >= 0 else 0
        items.append(dict(ids=E.user_turn(omni.tokenizer, q["text"], omni.n_image_tokens if img >= 0 else 0, n_audio),
                          image=img, audio=aud))
    batch = E.collate(items, image_bank, audio_bank, omni.tokenizer.pad_id, left_pad=True)
    answers = E.answer_batch(omni, batch, max_new_tokens=10)
    alone = [omni.chat(q["text"], image=q["image"], audio=q["audio"], max_new_tokens=10) for q in questions]
    assert answers == alone
    assert sum(bool(a.strip()) for a in alone) >= 3, f"too few non-empty answers to compare: {alone}"
    with torch.no_grad():
        logits = omni(**batch)
        L = batch["ids"].shape[1]
        for i, q in enumerate(questions):
            one = omni.prompt_batch([q])
            n = one["ids"].shape[1]
            assert n == int(batch["attention_mask"][i].sum())
            close(logits[i, L - n:], omni(**one)[0], f"Omni logits of question {i} ({n} tokens)")
