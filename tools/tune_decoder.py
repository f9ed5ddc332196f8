#!/usr/bin/env python3
"""Choose Stage B's beam decoder on the tune split, never the test split, and print the grid.

    .venv/bin/python tools/tune_decoder.py --ckpt checkpoints/audio_encoder_laptop
    .venv/bin/python tools/tune_decoder.py --ckpt checkpoints/audio_encoder_laptop --lm_weight 0.3,0.5,0.8

The tune split holds voice families that neither training nor the test split contains (`data/splits.json`). The
best row's beam_size, lm_weight and lm_bonus are the values to fix in `AudioEncoderConfig`; Stage B then reports
the test split once with them. Prints one JSON object per grid point, best (lowest WER, then CER) first."""
import argparse, json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def floats(text: str) -> list[float]: return [float(x) for x in text.split(",")]
def ints(text: str) -> list[int]: return [int(x) for x in text.split(",")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/audio_encoder_laptop", help="Stage B checkpoint file or folder")
    ap.add_argument("--beam_size", type=ints, default=[16])
    ap.add_argument("--lm_weight", type=floats, default=[0.3, 0.5, 0.8])
    ap.add_argument("--lm_bonus", type=floats, default=[0.5, 1.0, 1.5])
    ap.add_argument("--max_items", type=int, default=0, help="decode only the first N tune utterances (0: all)")
    args = ap.parse_args()

    from muomni.audio import load_audio_encoder, speech_features, tune_decoder
    model = load_audio_encoder(args.ckpt)
    if model.lm is None: raise SystemExit(f"{args.ckpt}: no char_lm.pt beside the checkpoint, so there is no LM to weigh")
    cfg = model.cfg
    tune = speech_features(cfg)["tune"]
    if args.max_items: tune = {k: v[:args.max_items] if isinstance(v, list) else v for k, v in tune.items()}
    grid = dict(beam_size=args.beam_size, lm_weight=args.lm_weight, lm_bonus=args.lm_bonus)
    print(json.dumps(dict(tune_utterances=len(tune["texts"]), configured=dict(beam_size=cfg.beam_size, lm_weight=cfg.lm_weight,
                                                                               lm_bonus=cfg.lm_bonus))))
    for row in tune_decoder(model, cfg, {"tune": tune}, model.lm, grid):
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    return 0


if __name__ == "__main__": sys.exit(main())
