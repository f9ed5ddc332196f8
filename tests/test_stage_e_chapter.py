"""Chapter 31's pure checks, moved out of the notebook's teaching path (the notebook keeps one readable check after each
definition): the chat template, CTC segments on toy frames, aligned positions under left padding, the projector's
kinds, empty pictures and no-speech clips, the honest-reply helpers."""
import numpy as np
import pytest
import torch
from fastcore.test import test_close as close, test_eq as eq   # renamed: pytest collects names that start with test

from muomni.omni import (HONEST_REPLIES, IGNORE, IMAGE_SLOT, Projector, aligned_positions, char_ids, chat_example,
                         ctc_segments, is_no_speech, no_speech_wave, nonempty, reply_budget, user_turn)
from muomni.thinker import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["what colour is the star? the red star is on the left. transcribe the audio. " * 30], 300)


def test_chat_template(tok):
    ids, labels = chat_example(tok, "red", "what colour is the star?", n_image=3)
    eq(ids.count(IMAGE_SLOT), 3)
    eq(len(ids), len(labels))
    eq([l for l in labels if l != IGNORE], tok.encode("red") + [tok.token_id("<|end|>")])
    eq(user_turn(tok, "hi")[-1], tok.token_id("<|assistant|>"))
    eq(len(char_ids(tok, "the red star")), len("the red star"))


def test_ctc_segments_pool_runs_drop_blanks_and_keep_one_token_for_silence():
    lp = torch.full((2, 7, 4), -9.0)
    for b, path in enumerate([[0, 1, 1, 0, 2, 2, 1], [3, 0, 0, 0, 0, 0, 0]]):
        for t, c in enumerate(path): lp[b, t, c] = 0.0
    fr = torch.arange(14, dtype=torch.float32).view(2, 7, 1)
    tokens, n = ctc_segments(fr, lp, torch.tensor([7, 1]))
    eq(n.tolist(), [3, 1])                                          # "a a _ b b a" -> a, b, a;  second: just "c"
    eq(tokens.shape, (2, 3, 5))
    close(tokens[0, :3, 0], torch.tensor([1.5, 4.5, 6.0]))          # mean frame index of each segment
    eq(tokens[0, :3, 1:].argmax(-1).tolist(), [1, 2, 1])
    eq(float(tokens[1, 0, 0]), 7.0)
    silent, k = ctc_segments(fr[:1], torch.zeros(1, 7, 4).index_fill_(2, torch.tensor([0]), 5.0), torch.tensor([4]))
    eq(k.tolist(), [1]); close(silent[0, 0, 0], torch.tensor(1.5))  # nothing emitted: the mean of the 4 frames


def test_aligned_positions_are_unmoved_by_left_padding():
    reply = 9
    ids = torch.tensor([[1, 0, 0, 0, 5, reply, 7, 7, 7], [1, 5, 5, 5, 5, reply, 7, 7, 7]])
    slots = torch.zeros_like(ids, dtype=torch.bool); slots[0, 1:4] = True
    plain = aligned_positions(ids, None, slots, reply, gap=2)
    eq(plain[0].tolist(), [0, 1, 2, 3, 4, 3, 4, 5, 6])
    pad = lambda x, v=0: torch.cat([torch.full((2, 2), v, dtype=x.dtype), x], 1)
    left = aligned_positions(pad(ids), pad(torch.ones_like(ids)), pad(slots, False), reply, gap=2)
    eq(left[:, 2:], plain)


def test_projector_kinds():
    eq(Projector(4, 8, "mlp")(torch.randn(3, 4)).shape, (3, 8))
    with pytest.raises(ValueError, match="linear"): Projector(4, 4, "conv")


def test_no_speech_clips():
    rng = np.random.default_rng(0)
    waves = [no_speech_wave(rng) for _ in range(6)]
    assert all(w.ndim == 1 and w.abs().max() < 0.25 for w in waves)


def test_honest_reply_helpers(tok):
    eq(nonempty(""), HONEST_REPLIES["unknown"]); eq(nonempty("red"), "red")
    assert is_no_speech("I hear no speech") and not is_no_speech("i hear no")
    assert reply_budget(tok) > len(HONEST_REPLIES["greeting"])


def test_spoken_test_sets_have_their_own_clip_folders():
    from muomni.omni import SPOKEN_TESTS, spoken_folder
    folders = {name: spoken_folder(name) for name, _, _ in SPOKEN_TESTS}
    assert folders == dict(spoken="test", spoken_heldout_wording="test_heldout_wording",
                           spoken_variant_heldout_wording="test_variant_heldout_wording", spoken_variant="test_variant")
    assert {pics for _, pics, _ in SPOKEN_TESTS} <= {"test", "test_variant"}          # never the training pictures
    assert {w for _, _, w in SPOKEN_TESTS} == {"train", "test"}                       # trained and held-out wordings
