"""Every stage's real entry point, the `muomni` command, under `torchrun --nproc_per_node 2` (gloo, CPU) at the smoke
preset, against the same command in one process at the same global batch.

Each stage runs once in one process (in this one), and once in two processes that stop half way (`stop_after`,
last.pt) and are started again with `--resume`. The two-process run must then hold what the one-process run holds:
- A, B, E: the same weights, to 5e-5 (A), 2e-4 (B) and 1e-5 (E). The loss is a mean over equal halves of the batch,
  so the all-reduced gradient is the one-process gradient summed in another order; AdamW steps keep that rounding small.
- C, D, and A with the xl Thinker's file (mixture of experts, FSDP): close, not equal, and the tests say why (a
  BatchNorm or a balancing loss sees each rank's half batch; the codec draws its first codes from rank 0's half).
Under DDP the Trainer also checks, at the end of every run, that the ranks hold identical weights (it raises
otherwise). Rank 0 alone writes one metrics.json and one set of checkpoints; every rank returns (and prints) the
same metrics, read here from each rank's own output."""
import json, os, subprocess, sys, tempfile
from pathlib import Path

import pytest, torch

from conftest import BIN, ROOT

STEPS = dict(A=8, Axl=8, B=4, C=6, D=4, E=6)     # max_steps; the two-process run stops after half and resumes

def launch(command: str, save: Path, *args, nproc: int = 1, timeout: int = 600) -> tuple[list, list[str]]:
    """Run `muomni <command> --preset smoke ...` (under torchrun on a free port when nproc > 1): (the metrics each rank
    printed, each rank's output)."""
    cli = [str(BIN / "muomni"), *smoke_args(command, save, args)]
    logs = Path(tempfile.mkdtemp(prefix=f"{save.name}_logs", dir=save.parent))        # each rank's output apart
    cmd = cli if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                  str(nproc), "--log-dir", str(logs), "--redirects", "3", *cli]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    outs = [r.stdout] if nproc == 1 else [p.read_text() for p in sorted(logs.glob("*/attempt_0/*/stdout.log"))]
    errs = [r.stderr] if nproc == 1 else [p.read_text() for p in sorted(logs.glob("*/attempt_0/*/stderr.log"))]
    assert r.returncode == 0, "\n".join([r.stdout[-2000:], r.stderr[-3000:], *[e[-3000:] for e in errs]])
    return [printed_metrics(o) for o in outs], outs

def run_here(command: str, save: Path, *args) -> dict:
    "The same command in this process (one process, no torchrun, one thread like each torchrun worker): its metrics."
    from muomni.cli import main
    threads, cwd = torch.get_num_threads(), os.getcwd()
    torch.set_num_threads(1); os.chdir(ROOT)
    try: assert main(smoke_args(command, save, args)) == 0
    finally: torch.set_num_threads(threads); os.chdir(cwd)
    return json.loads((save / "metrics.json").read_text())

def smoke_args(command: str, save: Path, args) -> list[str]:
    return [command, "--preset", "smoke", "--device", "cpu", "--save_dir", str(save), *map(str, args)]

def printed_metrics(stdout: str) -> dict | None:
    "The JSON object the CLI prints last (a stage's metrics), None when there is none (a paused run)."
    start = stdout.rfind("\n{\n")
    return json.loads(stdout[start:]) if start >= 0 else None

def run_two(command: str, save: Path, stop: int, *args, parallel: str = "ddp") -> dict:
    "Two processes: stop after step `stop`, then resume to the end; check the files and that the ranks agree."
    args = (*args, "--set", f"parallel={parallel}")
    paused, outs = launch(command, save, *args, "--set", f"stop_after={stop}", nproc=2)
    assert paused == [None, None] and all("stopped after step" in o for o in outs)
    assert torch.load(save / "last.pt", weights_only=True, map_location="cpu")["step"] == stop
    assert not (save / "metrics.json").exists()
    metrics, outs = launch(command, save, *args, "--resume", nproc=2)
    assert f"at step {stop}" in outs[0]                       # "resumed <name> from .../last.pt at step <stop>"
    assert metrics[0] == metrics[1] and metrics[0] is not None
    assert_one_set(save)
    return metrics[0]

def assert_one_set(save: Path) -> None:
    "Rank 0's files only: one metrics.json, last/final checkpoints, no per-rank or half-written leftovers."
    names = {p.name for p in save.iterdir() if p.is_file()}
    assert {"metrics.json", "config.json", "last.pt", "final.pt", "history.jsonl"} <= names, names
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names
    final = torch.load(save / "final.pt", weights_only=True, map_location="cpu")
    assert final["step"] == json.loads((save / "metrics.json").read_text())["steps"]

def weights(save: Path) -> dict:
    return torch.load(save / "final.pt", weights_only=True, map_location="cpu")["model"]

def assert_same_weights(a: Path, b: Path, atol: float, skip=()) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        if any(s in k for s in skip): continue
        torch.testing.assert_close(wa[k].float(), wb[k].float(), rtol=0, atol=atol, msg=lambda m: f"{k}: {m}")

def assert_close_metrics(a: dict, b: dict, keys, rel: float) -> None:
    for k in keys: assert b[k] == pytest.approx(a[k], rel=rel, abs=rel), (k, a[k], b[k])

# --- the commands (smoke preset, steps and evaluation cut to seconds) -------------------------------------------------
def stage_args(stage: str, parts: dict) -> tuple[str, list]:
    steps = ["--set", f"max_steps={STEPS[stage]}"]
    if stage in ("A", "Axl"):   # Axl: the xl Thinker's file, smoke-sized (experts, activation checkpointing, FSDP)
        return "train-text", ["--config", f"configs/thinker_{'xl' if stage == 'Axl' else 'tiny'}.json", *steps,
                              "--set", "val_freq=4", "--set", "eval_tokens=512", "--set", "final_eval_tokens=512",
                              "--set", "sample_tokens=4"]
    if stage == "B":        # no dropout or SpecAugment: masks drawn for a batch differ from masks drawn for its halves
        return "train-audio-enc", ["--config", "configs/audio_enc_tiny.json", *steps, "--set", "dropout=0",
                                   "--set", "freq_masks=0", "--set", "time_masks=0"]
    if stage == "C":        # no augmentation (drawn per batch); the step schedule (a time-based one differs run to run)
        return "train-vision", ["--config", "configs/vision_tiny.json", *steps, "--set", "augment=false",
                                "--set", "lr_schedule=steps", "--set", "max_time_s=0"]
    if stage == "D":
        return "train-talker", ["--config", "configs/talker_tiny.json", *steps, "--set", f"codec_steps={STEPS['D']}",
                                "--set", f"asr_dir={parts['B']}"]
    return "sft-omni", ["--config", "configs/omni_sft_tiny.json", *steps, "--set", "lr_schedule=steps",
                        "--set", "max_time_s=0", "--set", "val_freq=0", "--set", "asr_decoder=greedy",
                        "--thinker", parts["A"], "--audio_encoder", parts["B"], "--vision_encoder", parts["C"],
                        "--talker", parts["D"]]

def parts_for(stage: str, one) -> dict:
    "The save folders of the one-process runs a stage builds on: Stage B's ASR judges D; E joins A to D."
    return {s: one(s)[0] for s in "ABCD"} if stage == "E" else {"B": one("B")[0]} if stage == "D" else {}

@pytest.fixture(scope="module")
def one(tmp_path_factory):
    "The one-process runs, stage by stage (E uses the parts A-D made): {stage: (save_dir, metrics)}."
    root, runs = tmp_path_factory.mktemp("one"), {}
    def get(stage: str):
        if stage not in runs:
            command, args = stage_args(stage, parts_for(stage, get))
            save = root / stage
            if stage == "D": args += d_folders(root)
            runs[stage] = (save, run_here(command, save, *args))
        return runs[stage]
    return get

def two_args(stage: str, one, save: Path) -> tuple[str, list]:
    command, args = stage_args(stage, parts_for(stage, one))
    if stage == "D": args += d_folders(save.parent)
    return command, args

def d_folders(root: Path) -> list[str]:
    "Stage D's codec and vocoder runs write beside its Talker, in the test's own folder."
    return ["--set", f"codec_dir={root / 'D_codec'}", "--set", f"vocoder_dir={root / 'D_vocoder'}"]

# --- one test per stage -----------------------------------------------------------------------------------------------
def test_stage_a_ddp(tmp_path, one):
    ref, ref_m = one("A")
    command, args = two_args("A", one, tmp_path / "A")
    m = run_two(command, tmp_path / "A", STEPS["A"] // 2, *args)
    assert_same_weights(ref, tmp_path / "A", atol=5e-5)
    assert_close_metrics(ref_m, m, ["val_nats_per_char", "val_perplexity", "val_loss"], rel=1e-4)

def test_stage_a_xl_fsdp(tmp_path, one):
    "The xl Thinker's config: parameters, gradients and optimizer state sharded (FSDP2); still whole checkpoints."
    ref, ref_m = one("Axl")
    command, args = two_args("Axl", one, tmp_path / "A")
    m = run_two(command, tmp_path / "A", STEPS["Axl"] // 2, *args, parallel="fsdp")
    # the mixture of experts' balancing loss is a product of two means over the micro-batch (each rank's own half
    # here), so AdamW moves the weights a little differently; the held-out figures still agree closely
    assert_same_weights(ref, tmp_path / "A", atol=1e-2)
    assert_close_metrics(ref_m, m, ["val_nats_per_char", "val_perplexity", "val_loss"], rel=1e-4)

def test_stage_b(tmp_path, one):
    ref, ref_m = one("B")
    command, args = two_args("B", one, tmp_path / "B")
    m = run_two(command, tmp_path / "B", STEPS["B"] // 2, *args)
    # a float64 run gives the same gradients to 1e-17; in float32 AdamW divides each update by the gradient's own
    # scale, so where a gradient is near zero its rounding shows as a visible step (a few 1e-5 after 4 steps)
    assert_same_weights(ref, tmp_path / "B", atol=2e-4)
    assert m["cer"] == pytest.approx(ref_m["cer"], abs=0.02)      # decoded text: one character may flip

def test_stage_c(tmp_path, one):
    ref, ref_m = one("C")
    command, args = two_args("C", one, tmp_path / "C")
    m = run_two(command, tmp_path / "C", STEPS["C"] // 2, *args)
    # BatchNorm in the conv stem normalizes each rank's half batch by its own statistics (SyncBatchNorm is CUDA-only),
    # and the heads' masked means weigh a half batch's items their own way: after 6 AdamW steps of lr 5e-4 the
    # weights stay within a few steps of each other (a run on other data or another start differs by 0.1 and more)
    assert_same_weights(ref, tmp_path / "C", atol=1e-2, skip=("running_", "num_batches"))
    assert_close_metrics(ref_m, m, ["loss"], rel=0.05)

def test_stage_d(tmp_path, one):
    """Codec, vocoder, Talker (resumed) and voice classifier; restarted codes are rank 0's on both ranks, and the
    vocoder's replicas agree (the Trainer's replica check raises otherwise)."""
    ref, ref_m = one("D")
    command, args = two_args("D", one, tmp_path / "D")
    m = run_two(command, tmp_path / "D", STEPS["D"] // 2, *args)
    for part in ("D_codec", "D_vocoder", "D/voice_id"): assert_one_set(tmp_path / part)
    assert m["vocoder"] == "vocoder" and m["vocoder_steps"] == ref_m["vocoder_steps"]
    # not the same weights: the codec's first codes are latents drawn from one batch, here from rank 0's half of it
    # (then every rank's), and the Talker learns those codes
    assert_close_metrics(ref_m, m, ["recon_mse", "recon_mse_logmel"], rel=0.02)
    assert m["codebook_usage"] == pytest.approx(ref_m["codebook_usage"], abs=0.1)

def test_stage_e(tmp_path, one):
    "A batch without pictures or sounds still gives each projector a (zero) gradient: no unused-parameter search."
    ref, ref_m = one("E")
    command, args = two_args("E", one, tmp_path / "E")
    m = run_two(command, tmp_path / "E", STEPS["E"] // 2, *args)
    assert_same_weights(ref, tmp_path / "E", atol=1e-5)
    assert_close_metrics(ref_m, m, ["val_nats_per_char", "vqa_accuracy", "asr_wer"], rel=1e-4)
