"""Launched by tests/test_distributed.py under torchrun: train the core's stand-in model.
Arguments: save_dir steps [key=value ...] (config overrides as the CLI's --set takes them, e.g. parallel=fsdp; until=N
stops after step N). With SLOW_RANK=r in the environment, rank r sleeps SLOW_S seconds a step (ranks whose clocks run
apart). Under DDP every rank writes its own final weights to rank<r>.pt, so the test can check that the ranks agree."""
import os, sys, time
import torch
from muomni.cli import parse_sets
from muomni.core import load_config, demo_problem, Trainer, dist_info

save_dir, steps, extra = sys.argv[1], int(sys.argv[2]), parse_sets(sys.argv[3:])
until = extra.pop("until", None)
cfg = load_config({**dict(kind="demo", save_dir=save_dir, dropout=0.0, lr=1e-2, warmup_steps=2, max_steps=steps,
                          val_freq=5, print_freq=5, checkpoint_freq=5, batch_size=32, device="cpu"), **extra})
model, train, loss_fn, eval_fn = demo_problem(cfg)
slow = int(os.environ.get("SLOW_RANK", -1))
def timed_loss(m, b):
    if dist_info()[0] == slow: time.sleep(float(os.environ.get("SLOW_S", "0.02")))
    return loss_fn(m, b)
trainer = Trainer(model, cfg, train, timed_loss, eval_fn)
trainer.fit(until)
if not trainer.sharded:
    torch.save(dict(model=trainer.raw_model.state_dict(), step=trainer.step), f"{save_dir}/rank{dist_info()[0]}.pt")
